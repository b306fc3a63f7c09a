#!/usr/bin/env bash
# Install the browser the dashboard's browser tests drive: Debian's chromium (and
# chromium-driver, for Selenium users), with chromium-l10n: without its French resources
# Chromium draws <input type=date> as 10/25/2026 whatever the page's language. Playwright
# cannot download its own browser builds here; the tests launch /usr/bin/chromium.
# Idempotent. Run as root (or through sudo).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] \
   && [ -f /usr/lib/chromium/locales/fr.pak ]; then
  exit 0
fi
printf '[beffroi install] installing Debian packages: chromium chromium-driver chromium-l10n fonts-dejavu-core\n' >&2
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium chromium-driver chromium-l10n \
  fonts-dejavu-core >/dev/null
