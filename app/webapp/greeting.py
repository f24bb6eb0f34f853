"""The greeting served on the home pages.

Kept alone in this module on purpose: the release test rewrites this literal
to prove that a new build actually reaches every replica.
"""

GREETING = "Hello beautiful world!"
