# hostfw %postun: what %systemd_postun_with_restart hostfw.service expands to. try-restart only
# restarts a running daemon; the old one leaves its rules in the kernel when it stops and the
# new one adopts them, so an upgrade never opens a window. /var/lib/hostfw (the last good policy
# set) is kept on erase, as RPM packages keep state they did not install; /run/hostfw is not
# (a status.json left there would describe a daemon that is gone).
systemctl daemon-reload >/dev/null 2>&1 || :
if [ "$1" -ge 1 ]; then
    # Package upgrade, not uninstall.
    systemctl try-restart hostfw.service >/dev/null 2>&1 || :
else
    rm -rf /run/hostfw
    # cargo-generate-rpm cannot package directory entries, so rpm does not know these are ours:
    # remove them when empty (an admin's policy files keep /etc/hostfw/policies.d).
    rmdir /usr/libexec/hostfw /usr/share/doc/hostfw/examples /usr/share/doc/hostfw /usr/share/licenses/hostfw \
        /etc/hostfw/policies.d /etc/hostfw 2>/dev/null || :
fi
