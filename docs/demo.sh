#!/usr/bin/env bash
# The whole story on one machine: thingsim (the local AWS IoT Core), a SoftHSM
# token holding the device key, a certificate issued by thingsim, thingd
# connected as the thing. Run it with `make demo`; read it as a walkthrough.
set -euo pipefail

BIN=${BIN:-$(cd "$(dirname "$0")/.." && pwd)/bin}
THINGD=$BIN/thingd
THINGSIM=$BIN/thingsim
THING=${THING:-gw-1}
SOFTHSM_MODULE=${SOFTHSM_MODULE:-/usr/lib/softhsm/libsofthsm2.so}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/thingd-demo.XXXXXX")
SIM_PID= THINGD_PID= SENSOR_PID=
cleanup() {
  [ -n "$THINGD_PID" ] && kill -TERM "$THINGD_PID" 2>/dev/null && wait "$THINGD_PID" 2>/dev/null || true
  [ -n "$SENSOR_PID" ] && kill -TERM "$SENSOR_PID" 2>/dev/null && wait "$SENSOR_PID" 2>/dev/null || true
  [ -n "$SIM_PID" ] && kill -TERM "$SIM_PID" 2>/dev/null && wait "$SIM_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# show_reported prints state.reported of a shadow document (JSON on stdin).
show_reported() {
  if command -v python3 >/dev/null; then
    python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["state"]["reported"], indent=2, sort_keys=True))'
  else cat; fi
}
sim() { "$THINGSIM" "$@" --dir "$WORK/sim"; }
# sensor_seen_after T: the sensor's shadow has a lastSeen later than T (RFC 3339, UTC).
sensor_seen_after() {
  sim shadow get --thing "$THING-sensor" | sed -n 's/.*"lastSeen": *"\([^"]*\)".*/\1/p' | awk -v t="$1" '$0 > t {ok=1} END {exit !ok}'
}
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local t=$1 what=$2; shift 2
  for _ in $(seq $((t * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "demo: timed out waiting for $what" >&2; return 1
}

step "Start thingsim, the local AWS IoT Core, in $WORK/sim"
# Certificates get the gateway policy: gw-1 may act for things named gw-1-*.
"$THINGSIM" serve --dir "$WORK/sim" --mqtt 127.0.0.1:0 --api 127.0.0.1:0 --rotation-grace 5s \
  --default-policy thingd-gateway 2>"$WORK/thingsim.log" &
SIM_PID=$!
wait_for 20 "thingsim" test -s "$WORK/sim/api.json"
MQTT=$(sed -n 's/.*"mqttAddress": *"\([^"]*\)".*/\1/p' "$WORK/sim/api.json")
echo "MQTT broker (mutual TLS) at $MQTT; devices trust $WORK/sim/ca.pem"

step "Initialise a SoftHSM token for the device"
export SOFTHSM2_CONF=$WORK/softhsm2.conf
mkdir -p "$WORK/tokens"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' "$WORK/tokens" > "$SOFTHSM2_CONF"
softhsm2-util --init-token --free --label thingd --so-pin 5678 --pin 1234 >/dev/null
printf '1234' > "$WORK/pin" && chmod 600 "$WORK/pin"
KEY="pkcs11:token=thingd;object=device?module-path=$SOFTHSM_MODULE&pin-source=file:$WORK/pin"

step "Generate the device key inside the token (non-extractable)"
"$THINGD" key generate --key "$KEY"

step "Create the thing and have thingsim issue its certificate from a CSR"
"$THINGD" key csr --key "$KEY" --thing "$THING" > "$WORK/$THING.csr"
"$THINGSIM" thing create "$THING" --dir "$WORK/sim" >/dev/null
# A short-lived certificate (1 day), so that the rotation below matters.
"$THINGSIM" cert create --dir "$WORK/sim" --thing "$THING" --csr "$WORK/$THING.csr" --days 1 > "$WORK/$THING.pem"
openssl x509 -in "$WORK/$THING.pem" -noout -subject -serial -enddate

step "A serial sensor behind the gateway: a simulated one on a pseudo-terminal, sending JSON lines"
"$THINGSIM" device --link "$WORK/ttySENSOR" --interval 1s >/dev/null 2>"$WORK/sensor.log" &
SENSOR_PID=$!
wait_for 10 "the simulated sensor" test -L "$WORK/ttySENSOR"
echo "sensor on $WORK/ttySENSOR -> $(readlink "$WORK/ttySENSOR"); its thing is $THING-sensor"
"$THINGSIM" thing create "$THING-sensor" --dir "$WORK/sim" >/dev/null

step "Write the thingd config"
cat > "$WORK/thingd.toml" <<TOML
thing_name = "$THING"
endpoint = "localhost:${MQTT##*:}"
server_ca = "$WORK/sim/ca.pem"
state_dir = "$WORK/state"
key = "$KEY"
certificate = "$WORK/$THING.pem"
log_level = "info"

# The sensor is reported in the shadow of thing $THING-sensor, through $THING's session.
[[child]]
name = "sensor"
adapter = "line"
port = "$WORK/ttySENSOR"
poll_interval = "2s"
TOML
cat "$WORK/thingd.toml"

step "Start thingd"
"$THINGD" run --config "$WORK/thingd.toml" 2>"$WORK/thingd.log" &
THINGD_PID=$!
wait_for 30 "thingd to connect" grep -q "mqtt connected" "$WORK/thingd.log"

step "thingsim's view: live connections"
"$THINGSIM" clients --dir "$WORK/sim"

step "thingd's view: thingd status"
"$THINGD" status --config "$WORK/thingd.toml"

step "The device's reported shadow (identity, rotation, effective config, system facts, children) before rotation"
wait_for 20 "the first shadow report" sh -c "'$THINGSIM' shadow get --thing '$THING' --dir '$WORK/sim' | grep -q certificateId"
sim shadow get --thing "$THING" | show_reported

step "The sensor's own shadow ($THING-sensor): readings, connected, lastSeen, reported by $THING"
wait_for 20 "the sensor's readings" sh -c "'$THINGSIM' shadow get --thing '$THING-sensor' --dir '$WORK/sim' | grep -q temperature"
sim shadow get --thing "$THING-sensor" | show_reported

step "Fleet security problems: a 1-day certificate, and an overly permissive policy attached to it"
OLD_SERIAL=$("$THINGD" status --config "$WORK/thingd.toml" --json | sed -n 's/.*"serial": *"\([^"]*\)".*/\1/p')
OLD_ID=$("$THINGD" status --config "$WORK/thingd.toml" --json | sed -n 's/.*"certificateId": *"\([^"]*\)".*/\1/p' | head -1)
echo '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iot:*", "Resource": "*"}]}' > "$WORK/permissive.json"
sim policy create fleet-permissive --document "$WORK/permissive.json" >/dev/null
sim policy attach fleet-permissive --cert "$OLD_ID"
sim policy test --cert "$OLD_ID" --action PUBLISH --resource 'topic/$aws/things/gw-2/shadow/update' | head -3

step "Automated remediation: expiring certificate -> rotation group (continuous rotate-certificate job); permissive policy -> replaced"
echo '{"operation": "rotate-certificate"}' > "$WORK/rotate.json"
sim group create rotation
sim job create --group rotation --continuous --document "$WORK/rotate.json" --job-id rotate-certificate >/dev/null
sim mitigation action create add-to-rotation --type ADD_THINGS_TO_THING_GROUP --groups rotation >/dev/null
sim mitigation action create restrict-policy --type REPLACE_DEFAULT_POLICY_VERSION >/dev/null
sim remediation set DEVICE_CERTIFICATE_EXPIRING_CHECK add-to-rotation
sim remediation set IOT_POLICY_OVERLY_PERMISSIVE_CHECK restrict-policy
sim remediation list

step "Audit #1 (Device Defender style): findings, then the remediation runs"
sim audit run

step "thingd rotates on the job the remediation gave it (new key in the token's other slot, CSR, register, verify, commit)"
wait_for 60 "the rotation job to succeed" sh -c "'$THINGSIM' job describe rotate-certificate --thing '$THING' --dir '$WORK/sim' | grep -q SUCCEEDED"
wait_for 30 "thingd to clean up the old key" grep -q "old key deleted" "$WORK/thingd.log"
grep -E 'rotation step|rotation committed|old key deleted' "$WORK/thingd.log" | sed 's/^/  thingd: /'
NEW_SERIAL=$("$THINGD" status --config "$WORK/thingd.toml" --json | sed -n 's/.*"serial": *"\([^"]*\)".*/\1/p')
NEW_ID=$("$THINGD" status --config "$WORK/thingd.toml" --json | sed -n 's/.*"certificateId": *"\([^"]*\)".*/\1/p' | head -1)
echo "old certificate serial: $OLD_SERIAL"
echo "new certificate serial: $NEW_SERIAL"
"$THINGD" status --config "$WORK/thingd.toml"

step "The reported shadow after rotation (new certificate, last rotation)"
wait_for 20 "the shadow to show the new certificate" sh -c "'$THINGSIM' shadow get --thing '$THING' --dir '$WORK/sim' | grep -q '$NEW_ID'"
sim shadow get --thing "$THING" | show_reported

step "The sensor behind the gateway kept reporting through the rotation (same thing, new gateway certificate)"
ROTATED_AT=$(date -u +%Y-%m-%dT%H:%M:%SZ)
wait_for 20 "a sensor report after the rotation" sensor_seen_after "$ROTATED_AT"
sim shadow get --thing "$THING-sensor" | show_reported | grep -E '"(connected|lastSeen|temperature)"'

step "The policy is now least-privilege: gw-1 may not touch gw-2's shadow"
sim policy test --cert "$NEW_ID" --action PUBLISH --resource 'topic/$aws/things/gw-2/shadow/update' | head -3

step "thingsim retires the old certificate after the grace period"
wait_for 90 "the old certificate to be INACTIVE" sh -c "'$THINGSIM' cert describe --id '$OLD_ID' --dir '$WORK/sim' | grep -q INACTIVE"
sim cert describe --id "$OLD_ID" | grep -E '"(certificateId|status)"'
sim clients

step "Audit #2: compliant"
sim audit run

step "Stop thingd (SIGTERM: MQTT DISCONNECT sent) and thingsim"
kill -TERM "$THINGD_PID"; wait "$THINGD_PID"; THINGD_PID=
sed 's/^/  thingd: /' "$WORK/thingd.log"
kill -TERM "$SENSOR_PID"; wait "$SENSOR_PID" || true; SENSOR_PID=
kill -TERM "$SIM_PID"; wait "$SIM_PID" || true; SIM_PID=
grep -E 'presence|disconnect' "$WORK/thingsim.log" | sed 's/^/  thingsim: /' | tail -3 || true
echo
echo "demo: done"
