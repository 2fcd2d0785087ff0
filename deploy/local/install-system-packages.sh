#!/usr/bin/env bash
# Debian packages visearch needs on a developer or CI machine: real data sets and photos.
#   dataset-fashion-mnist  70,000 Zalando product images (Fashion-MNIST)
#   darknet                real photos in /usr/share/darknet/data (dog, eagle, giraffe, ...)
#   wordnet                WordNet 3.0 (ImageNet classes are its noun synsets)
#   fonts-dejavu-core      TrueType fonts for the OCR tests (text drawn onto real photos)
#   scratch                Scratch 1.4's media library: hand-drawn and photographed backgrounds, cartoon
#                          sprites (/usr/share/scratch/Media); moderation and colour-label tests
#   renpy-thequestion      a Ren'Py game's anime-style character art and backgrounds
#                          (/usr/share/games/renpy/the_question/game/images); drawings for the moderation tests
#   etcd-server            etcd, under the real kube-apiserver of the chart's server-side install test
#                          (tests/integration/test_chart_apiserver.py)
#   chromium, chromium-driver  headless browser + WebDriver for the playground's browser tests (Selenium; no
#                          browser is ever downloaded at run time)
# Idempotent: does nothing when every package is installed.
set -euo pipefail
packages=(dataset-fashion-mnist darknet wordnet fonts-dejavu-core scratch renpy-thequestion etcd-server chromium chromium-driver)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "system packages present: ${packages[*]}"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  SUDO="sudo"
fi
echo "installing: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
