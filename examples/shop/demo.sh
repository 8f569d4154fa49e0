#!/usr/bin/env bash
# The example shop with fake payment and SMS gateways on this machine, so that its outbound calls
# show gateway spans, redacted parameter summaries and failure lines. Stops the fakes on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
PORT="${PORT:-8000}"
fakes_out="$(mktemp)"
.venv/bin/python -m tests.fakes.gateways --lifetime 3600 > "$fakes_out" &
fakes_pid=$!
trap 'kill "$fakes_pid" 2>/dev/null || true; rm -f "$fakes_out"' EXIT
for _ in $(seq 50); do
  grep -q SHOP_SMS_URL "$fakes_out" && break
  sleep 0.1
done
payment_url="$(sed -n 's/^SHOP_PAYMENT_URL=//p' "$fakes_out")"
sms_url="$(sed -n 's/^SHOP_SMS_URL=//p' "$fakes_out")"
# Both fakes listen on 127.0.0.1: the SMS one is called as "localhost" so the two gateway rules
# can tell them apart by host, as api.stripe.com and api.twilio.com would be.
export SHOP_PAYMENT_URL="$payment_url"
export SHOP_SMS_URL="${sms_url/127.0.0.1/localhost}"
export LOGKIT_GATEWAYS="${LOGKIT_GATEWAYS:-payment=127.0.0.1;sms=localhost}"
export OTEL_SERVICE_NAME="${OTEL_SERVICE_NAME:-shop}" LOGKIT_ENV="${LOGKIT_ENV:-dev}"
echo "shop on http://127.0.0.1:$PORT with $LOGKIT_GATEWAYS (payment $SHOP_PAYMENT_URL, sms $SHOP_SMS_URL)" >&2
.venv/bin/otel-logkit-instrument uvicorn examples.shop.main:app --host 127.0.0.1 --port "$PORT"
