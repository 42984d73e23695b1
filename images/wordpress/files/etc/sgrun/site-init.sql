-- Run once by mariadb-install-db (--extra-file) when a site's database is created.
-- WordPress connects as the unix user www-data over the unix socket, authenticated by the
-- kernel (SO_PEERCRED, unix_socket plugin): there is no database password anywhere.
-- The bootstrap runs with the grant tables off: load them, or CREATE USER fails with 1290.
FLUSH PRIVILEGES;
CREATE DATABASE IF NOT EXISTS wordpress CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE USER IF NOT EXISTS 'www-data'@'localhost' IDENTIFIED VIA unix_socket;
GRANT ALL PRIVILEGES ON wordpress.* TO 'www-data'@'localhost';
-- mariadb-install-db also makes root@<hostname> accounts (passwordless in the proxies
-- table); with skip-networking and skip-name-resolve only 'localhost' can ever match.
DELETE FROM mysql.global_priv WHERE Host <> 'localhost';
DELETE FROM mysql.proxies_priv WHERE Host <> 'localhost';
