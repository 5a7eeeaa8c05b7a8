# hostfw %post: what %systemd_post hostfw.service expands to (cargo-generate-rpm expands no
# macros), then a first start. The package's 90-hostfw.preset enables the unit; an admin's
# preset (/etc/systemd/system-preset) that disables it wins, and then nothing is started.
if [ "$1" -eq 1 ]; then
    # Initial installation.
    systemctl --no-reload preset hostfw.service >/dev/null 2>&1 || :
    if [ -d /run/systemd/system ] && systemctl --quiet is-enabled hostfw.service 2>/dev/null; then
        systemctl daemon-reload >/dev/null 2>&1 || :
        systemctl start hostfw.service >/dev/null 2>&1 || :
    fi
fi
