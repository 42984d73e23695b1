<?php
/*
 * WordPress configuration of an sgrun site. Debian's /usr/share/wordpress/wp-config.php
 * looks for /etc/wordpress/config-<host>.php and falls back to this file, so the site
 * answers for any Host header the front proxy routes to it.
 *
 * Tenant data lives in /srv/site (the only writable directory that persists):
 *   /srv/site/mysql        MariaDB datadir
 *   /srv/site/wp-content   uploads, plugins, themes (image-provided ones are symlinks)
 *   /srv/site/wp-salts.php keys and salts, made by the init at the first start
 *   /srv/site/wp-config-local.php  optional, host/tenant overrides (read first)
 */
if (is_readable('/srv/site/wp-config-local.php')) {
    require_once '/srv/site/wp-config-local.php';
}

// The database user is the unix user www-data, authenticated by the socket's peer
// credentials: no password (see /etc/sgrun/site-init.sql).
defined('DB_NAME') || define('DB_NAME', 'wordpress');
defined('DB_USER') || define('DB_USER', 'www-data');
defined('DB_PASSWORD') || define('DB_PASSWORD', '');
defined('DB_HOST') || define('DB_HOST', 'localhost:/run/mysqld/mysqld.sock');
defined('DB_CHARSET') || define('DB_CHARSET', 'utf8mb4');
defined('DB_COLLATE') || define('DB_COLLATE', '');

defined('WP_CONTENT_DIR') || define('WP_CONTENT_DIR', '/srv/site/wp-content');

// Egress is off by default (the site's network namespace has loopback only): fail
// outgoing HTTP at once instead of waiting for DNS. A site with egress enabled sets
// this to false in wp-config-local.php.
defined('WP_HTTP_BLOCK_EXTERNAL') || define('WP_HTTP_BLOCK_EXTERNAL', true);
// Core, plugins and themes from the image are updated with the image.
defined('AUTOMATIC_UPDATER_DISABLED') || define('AUTOMATIC_UPDATER_DISABLED', true);
// wp-content belongs to www-data, the PHP user: no FTP credentials prompt.
defined('FS_METHOD') || define('FS_METHOD', 'direct');

// Unique per site, never in the image: a missing file is a fatal error, never the
// well-known defaults.
require_once '/srv/site/wp-salts.php';
