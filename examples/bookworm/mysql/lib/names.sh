# Sourced by the db relation hooks: the MariaDB names made for a remote service, the same in every hook.

# mariadb_name NAME LIMIT: NAME with every character but [A-Za-z0-9_] turned into '_' (so it needs no
# quoting in SQL), at most LIMIT characters: a longer one keeps a prefix and ends with '_' and 8 hex digits
# of NAME's sha256, so two long names that share a prefix never share a database or a user.
mariadb_name() {
    local name=${1//[^A-Za-z0-9_]/_} limit=$2
    if [ "${#name}" -gt "$limit" ]; then
        name=${name:0:$((limit - 9))}_$(printf '%s' "$1" | sha256sum | cut -c1-8)
    fi
    printf '%s' "$name"
}

# service_database SERVICE / service_user SERVICE. Users at most 32 characters: MariaDB takes 80, but
# MySQL 5.7 clients and tools still assume 32.
service_database() { mariadb_name "$1" 64; }
service_user() { mariadb_name "$1" 32; }
