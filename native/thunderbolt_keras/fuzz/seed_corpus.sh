#!/usr/bin/env bash
# Seeds the fuzz corpora from the committed Keras fixtures (corpus/ is git-ignored).
set -euo pipefail
cd "$(dirname "$0")"
fixtures=../../../test/fixtures/keras
mkdir -p corpus/import_bytes corpus/keras_parts
releases="$fixtures"_releases
cp "$fixtures"/*.keras "$fixtures"/*.h5 "$fixtures"2/*.keras "$fixtures"2/*.h5 \
  "$releases"/*.keras corpus/import_bytes/
tmp=$(mktemp -d)
for model in "$fixtures"/*.keras "$fixtures"2/*.keras "$releases"/*.keras; do
  name=$(basename "$model" .keras)
  unzip -q -o "$model" config.json model.weights.h5 -d "$tmp"
  { cat "$tmp/config.json"; printf '\0'; cat "$tmp/model.weights.h5"; } > "corpus/keras_parts/$name"
done
rm -rf "$tmp"
