# hostfw %preun: what %systemd_preun hostfw.service expands to, then `hostfw flush` while the
# binary still exists (nothing would maintain orphaned rules). On upgrade ($1 >= 1) nothing
# happens here: %postun restarts the daemon, and its rules stay in the kernel in between.
if [ "$1" -eq 0 ]; then
    # Package removal, not upgrade.
    systemctl --no-reload disable --now hostfw.service >/dev/null 2>&1 || :
    # A failed flush must not block removal: say so and leave the rules for the admin.
    hostfw flush || echo "hostfw: warning: 'hostfw flush' failed; its cali- chains and ipsets may remain in the kernel" >&2
fi
