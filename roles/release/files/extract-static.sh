#!/bin/sh
# extract-static.sh IMAGE PATH_IN_IMAGE DEST: copy the files under PATH_IN_IMAGE out of IMAGE
# into DEST, beside what DEST holds already. Prints "copied N files" or "no static files".
# docker cp reads a created (never started) container, so the image needs no shell or tar.
set -eu
image=$1 path=$2 dest=$3
container=$(docker create "$image")
trap 'docker rm -f "$container" >/dev/null 2>&1 || true' EXIT
staging=$(mktemp -d)
trap 'docker rm -f "$container" >/dev/null 2>&1 || true; rm -rf "$staging"' EXIT
if ! error=$(docker cp "$container:$path/." "$staging/" 2>&1); then
  case $error in
    *"Could not find the file"*|*"No such container:path"*)
      echo "no static files at $path in $image"
      exit 0 ;;
  esac
  echo "$error" >&2
  exit 1
fi
# Readable by NGINX whatever their owner and mode were in the image.
chown -R root:root "$staging"
chmod -R u=rwX,go=rX "$staging"
mkdir -p "$dest"
cp -a "$staging/." "$dest/"
echo "copied $(find "$staging" -type f | wc -l) files from $path"
