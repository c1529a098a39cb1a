#!/usr/bin/env bash
# Install (or remove) edge face analytics as a hardened systemd service on Raspberry Pi OS
# (Bookworm or later; any Debian-like system with systemd works).
#
#   sudo systemd/install.sh              install or upgrade, then (re)start the service
#   sudo systemd/install.sh --tflite     use tflite-runtime 2.14 (+ numpy<2) instead of LiteRT;
#                                        Bookworm / Python <= 3.11 only
#   sudo systemd/install.sh --no-start   install and enable, but do not start now
#   sudo systemd/install.sh --no-time-sync   do not make start-up wait for NTP (a board with an RTC)
#   sudo systemd/install.sh --uninstall  remove the unit, the user and /opt/edge-analytics;
#                                        keeps /etc/edge-analytics and /var/lib/edge-analytics
#   sudo systemd/install.sh --uninstall --purge   ... and removes those too
#
# What it sets up (every step is skipped when already done, so re-running is safe):
#   user      edge-analytics (system user, member of `video` for the camera)
#   code      /opt/edge-analytics/venv (venv with --system-site-packages, so the apt
#             package python3-picamera2 is importable), the project pip-installed into it
#   models    the int8 models ship inside the installed package (no separate copy)
#   config    /etc/edge-analytics/config.yaml (from edge/config.example.yaml, only if absent)
#   password  /etc/edge-analytics/mqtt-password (empty, root-only, only if absent); the unit
#             hands it to the service as the systemd credential `mqtt-password`
#   state     /var/lib/edge-analytics (created by systemd: StateDirectory=)
#   unit      /etc/systemd/system/edge-analytics.service
#
# Logs: journalctl -u edge-analytics -f      Sandbox: systemd-analyze security edge-analytics
set -euo pipefail

NAME=edge-analytics
PREFIX=/opt/$NAME
VENV=$PREFIX/venv
CONF_DIR=/etc/$NAME
CONF=$CONF_DIR/config.yaml
SECRET=$CONF_DIR/mqtt-password
STATE_DIR=/var/lib/$NAME
LOG_DIR=/var/log/$NAME
UNIT=/etc/systemd/system/$NAME.service
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

say() { printf '==> %s\n' "$*"; }
run() { printf '    $ %s\n' "$*"; "$@"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; }

TFLITE=0 UNINSTALL=0 PURGE=0 START=1 TIME_SYNC=1
for arg in "$@"; do
    case $arg in
        --tflite) TFLITE=1 ;;
        --uninstall) UNINSTALL=1 ;;
        --purge) PURGE=1 ;;
        --no-start) START=0 ;;
        --no-time-sync) TIME_SYNC=0 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $arg" ;;
    esac
done
[[ $PURGE -eq 1 && $UNINSTALL -eq 0 ]] && die "--purge only goes with --uninstall"
[[ $(id -u) -eq 0 ]] || die "run as root (sudo $0 $*)"
command -v systemctl >/dev/null || die "systemd (systemctl) is required"

uninstall() {
    if systemctl list-unit-files "$NAME.service" >/dev/null 2>&1 && [[ -e $UNIT ]]; then
        say "stopping and disabling $NAME.service"
        run systemctl disable --now "$NAME.service" || true
    fi
    if [[ -e $UNIT ]]; then
        say "removing $UNIT"
        run rm -f "$UNIT"
        run systemctl daemon-reload
        run systemctl reset-failed "$NAME.service" 2>/dev/null || true
    fi
    if [[ -e /etc/systemd/system/systemd-time-wait-sync.service.d/edge-analytics.conf ]]; then
        say "removing the time-sync wait limit (systemd-time-wait-sync stays enabled)"
        run rm -f /etc/systemd/system/systemd-time-wait-sync.service.d/edge-analytics.conf
    fi
    if [[ -d $PREFIX ]]; then
        say "removing $PREFIX (venv and models)"
        run rm -rf "$PREFIX"
    fi
    if id -u "$NAME" >/dev/null 2>&1; then
        say "removing user $NAME"
        run userdel "$NAME"
    fi
    if [[ $PURGE -eq 1 ]]; then
        say "purging configuration, state (spool, sequence numbers) and logs"
        run rm -rf "$CONF_DIR" "$STATE_DIR" "$LOG_DIR"
    else
        say "kept $CONF_DIR and $STATE_DIR (use --uninstall --purge to remove them)"
    fi
}

if [[ $UNINSTALL -eq 1 ]]; then
    uninstall
    say "done"
    exit 0
fi

[[ -f $SRC/pyproject.toml && -d $SRC/edge ]] || die "run this script from the project's systemd/ folder ($SRC is not the project)"
[[ -f $SRC/models/manifest.json ]] || die "$SRC/models/manifest.json is missing: the models are not in the source tree"
command -v python3 >/dev/null || die "python3 is required (apt install python3)"
python3 -c 'import venv, ensurepip' 2>/dev/null || die "python3 venv support is missing: apt install python3-venv"

if [[ $TFLITE -eq 1 ]]; then
    python3 -c 'import sys; sys.exit(sys.version_info[:2] > (3, 11))' \
        || die "--tflite needs Python <= 3.11 (tflite-runtime 2.14 has no wheels for $(python3 -V)); use the default LiteRT"
fi
if ! python3 -c 'import picamera2' 2>/dev/null; then
    say "note: picamera2 is not installed system-wide; for a Raspberry Pi camera: apt install python3-picamera2"
fi

# --- user ------------------------------------------------------------------------------
if ! id -u "$NAME" >/dev/null 2>&1; then
    say "creating system user $NAME (group video for the camera)"
    getent group video >/dev/null || run groupadd --system video
    run useradd --system --user-group --groups video --home-dir "$STATE_DIR" --no-create-home \
        --shell /usr/sbin/nologin --comment "Edge face analytics" "$NAME"
elif ! id -nG "$NAME" | tr ' ' '\n' | grep -qx video; then
    say "adding $NAME to group video"
    run usermod -a -G video "$NAME"
fi

# --- code --------------------------------------------------------------------------------
if [[ ! -x $VENV/bin/python ]]; then
    say "creating venv $VENV (with system site-packages, for picamera2)"
    run install -d -m 0755 "$PREFIX"
    run python3 -m venv --system-site-packages "$VENV"
fi
PIP_ARGS=(--disable-pip-version-check --no-cache-dir --upgrade)
if [[ $TFLITE -eq 1 ]]; then
    TARGET="${SRC}[tflite]"
else
    TARGET="$SRC"
    # The apt picamera2 stack (simplejpeg, ...) is built against the system numpy 1.x; a numpy 2
    # in the venv would shadow it and break `import picamera2`.
    if python3 -c 'import numpy, sys; sys.exit(int(numpy.__version__.split(".")[0]) != 1)' 2>/dev/null; then
        say "system numpy is 1.x: keeping the venv on numpy<2 so picamera2 keeps working"
        PIP_ARGS+=("numpy<2")
    fi
fi
say "installing the project into $VENV"
run "$VENV/bin/pip" install "${PIP_ARGS[@]}" "$TARGET"
run "$VENV/bin/python" -m compileall -q "$VENV/lib" >/dev/null  # the venv is read-only at run time
[[ -x $VENV/bin/edge ]] || die "$VENV/bin/edge was not installed"
run "$VENV/bin/edge" models >/dev/null || die "the installed models do not verify: $VENV/bin/edge models"
if [[ -d $PREFIX/models ]]; then  # copied by an older version of this script; a config may point there
    say "note: $PREFIX/models is no longer needed (the models ship inside the package); remove models.dir from"
    say "  $CONF, then the folder"
fi

# --- configuration -----------------------------------------------------------------------
run install -d -m 0750 -o root -g "$NAME" "$CONF_DIR"
if [[ ! -e $CONF ]]; then
    say "writing $CONF from the example (edit device_id, source and sink)"
    run install -m 0640 -o root -g "$NAME" "$SRC/edge/config.example.yaml" "$CONF"
else
    say "keeping existing $CONF"
fi
if [[ ! -e $SECRET ]]; then
    say "creating empty $SECRET (root-only; put the broker password there and set"
    say "  sink.password_credential: mqtt-password  in $CONF)"
    run install -m 0600 -o root -g root /dev/null "$SECRET"
fi

# --- unit --------------------------------------------------------------------------------
if ! cmp -s "$SRC/systemd/$NAME.service" "$UNIT"; then
    say "installing $UNIT"
    run install -m 0644 "$SRC/systemd/$NAME.service" "$UNIT"
fi
# Windows are labelled by the wall clock, and a Pi has no real-time clock: let start-up wait for
# NTP (systemd-timesyncd) so the first windows carry the right time. Bounded: a site without
# network starts counting after two minutes anyway (the state store keeps such a run's windows
# apart from earlier ones: a clock behind the last stored window starts a new stream).
if [[ $TIME_SYNC -eq 1 ]] && systemctl list-unit-files systemd-time-wait-sync.service >/dev/null 2>&1; then
    WAIT_DIR=/etc/systemd/system/systemd-time-wait-sync.service.d
    if [[ ! -e $WAIT_DIR/edge-analytics.conf ]]; then
        say "start-up waits up to 2 minutes for time sync (systemd-time-wait-sync)"
        run install -d -m 0755 "$WAIT_DIR"
        printf '[Service]\nTimeoutStartSec=120\n' | run install -m 0644 /dev/stdin "$WAIT_DIR/edge-analytics.conf"
    fi
    run systemctl enable systemd-time-wait-sync.service
fi
run systemctl daemon-reload
run systemctl enable "$NAME.service"
if [[ $START -eq 1 ]]; then
    say "(re)starting $NAME.service"
    run systemctl restart "$NAME.service"
    systemctl --no-pager --lines=5 status "$NAME.service" || true
else
    say "not started (--no-start): systemctl start $NAME"
fi
say "done. Logs: journalctl -u $NAME -f"
