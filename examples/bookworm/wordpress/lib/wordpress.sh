# Sourced by the hooks: where the charm keeps things, and the install step db-relation-changed and
# config-changed share.

# What Apache's SetEnv WORDPRESS_CONFIG (files/ensemble-wordpress.conf) makes Debian's wp-config.php load.
wp_config=/etc/wordpress/config-ensemble.php
# Root-only state: the administrator's generated password.
state_dir=/var/lib/ensemble-wordpress
admin_password_file=$state_dir/admin-password

# complete_install: WordPress installed in its database (install.php: wp_install(), as the setup wizard
# would) or, already installed, given the configured title. Runs as www-data, the only user besides root that
# may read $wp_config. The unit's directory is root-only, so the script reaches PHP on stdin; the
# administrator's password on file descriptor 3, opened here as root (never an argument). Needs $wp_config.
complete_install() {
    local title user email result
    title=$(config-get title)
    user=$(config-get admin-user)
    email=$(config-get admin-email)
    if [[ ! $user =~ ^[A-Za-z0-9_.@-]{1,60}$ ]]; then
        juju-log -l ERROR "admin-user '$user' is not a WordPress login name (letters, digits, '_', '.', '-', '@'; at most 60): fix it with ensemble set"
        return 1
    fi
    if [ ! -s "$admin_password_file" ]; then
        (
            umask 077
            mkdir -p "$state_dir"
            head -c 18 /dev/urandom | base64 | tr '+/' '-_' > "$admin_password_file.tmp"  # 24 characters
            mv "$admin_password_file.tmp" "$admin_password_file"
        )
        juju-log "generated the password of WordPress's administrator $user, kept in $admin_password_file"
    fi
    result=$(runuser -u www-data -- env WORDPRESS_CONFIG=ensemble WP_TITLE="$title" WP_ADMIN_USER="$user" \
        WP_ADMIN_EMAIL="$email" php < "${CHARM_DIR:-$(dirname "$0")/..}/lib/install.php" 3< "$admin_password_file")
    juju-log "$result"
}
