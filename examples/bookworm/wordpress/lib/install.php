<?php
/*
 * WordPress's install without its web form, as wp-cli's "core install" does: wp_install() with the title,
 * administrator and e-mail from the environment (WP_TITLE, WP_ADMIN_USER, WP_ADMIN_EMAIL) and the
 * administrator's password from file descriptor 3 (this script comes on stdin). Already installed (another
 * unit did it, or a hook runs again): only the title is set. Run by lib/wordpress.sh as www-data with
 * WORDPRESS_CONFIG=ensemble, which makes Debian's wp-config.php load /etc/wordpress/config-ensemble.php.
 * Prints one line; a failure exits 1 with one line on stderr.
 */

function fail(string $message): never {
    fwrite(STDERR, "install.php: $message\n");
    exit(1);
}

$password = trim((string) file_get_contents('php://fd/3'));
$title = getenv('WP_TITLE');
$user = getenv('WP_ADMIN_USER');
$email = getenv('WP_ADMIN_EMAIL');
if ($password === '' || $title === false || $user === false || $email === false) {
    fail('needs WP_TITLE, WP_ADMIN_USER, WP_ADMIN_EMAIL and the password on file descriptor 3');
}

// The database must answer first: WordPress's own failure (dead_db) prints an HTML page and exits 0.
// MariaDB may be restarting (its config-changed): a few tries, 1 s apart.
$config = '/etc/wordpress/config-' . getenv('WORDPRESS_CONFIG') . '.php';
if (!is_readable($config)) {
    fail("$config is missing or unreadable: the db relation writes it");
}
require_once $config;
mysqli_report(MYSQLI_REPORT_ERROR | MYSQLI_REPORT_STRICT);
for ($try = 1; ; $try++) {
    try {
        (new mysqli(DB_HOST, DB_USER, DB_PASSWORD, DB_NAME))->close();
        break;
    } catch (mysqli_sql_exception $e) {
        if ($try >= 10) {
            fail('database ' . DB_NAME . ' at ' . DB_HOST . ' as ' . DB_USER . ': ' . $e->getMessage());
        }
        sleep(1);
    }
}

// What a web request would have: wp-config.php reads the Host header, WordPress the URL.
$_SERVER['HTTP_HOST'] = parse_url(WP_HOME, PHP_URL_HOST);
$_SERVER['REQUEST_URI'] = '/';
define('WP_INSTALLING', true);

// No mail from this unit (there may be no mail server): the install's "your new site" notice is skipped.
function wp_new_blog_notification($blog_title, $blog_url, $user_id, $password) {
}

require '/usr/share/wordpress/wp-load.php';
require_once ABSPATH . 'wp-admin/includes/upgrade.php';

if (is_blog_installed()) {
    update_option('blogname', $title);
    echo "WordPress was installed already: title set\n";
    exit(0);
}
wp_install($title, $user, $email, true, '', wp_slash($password));
if (!is_blog_installed()) {
    fail('wp_install() ran but WordPress is not installed in database ' . DB_NAME);
}
echo "WordPress installed for " . WP_HOME . ", administrator $user\n";
