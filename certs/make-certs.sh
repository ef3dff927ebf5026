#!/usr/bin/env bash
# Regenerates grove's TEST certificates in this folder (for tests only:
# these keys are published with the source). Needs the openssl command.
#
#   ca.pem / ca.key                 test CA
#   server.pem / server.key         server: localhost, 127.0.0.1, ::1 (signed by ca)
#   client.pem / client.key         client "grove test client" (signed by ca)
#   expired-client.pem / .key       client signed by ca, valid 2020-01-01 .. 2020-01-02 only
#   other-ca.pem / other-ca.key     a second CA, trusted by nothing
#   other-client.pem / .key         client signed by other-ca
#   tenant-a.pem / .key             client "grove tenant a", URI:grove://tenant/a (signed by ca)
#   tenant-b.pem / .key             client "grove tenant b", URI:grove://tenant/b, DNS:b.tenants.grove.test (signed by ca)
#   etcd.pem / etcd.key             server and client: localhost, 127.0.0.1, ::1 (signed by ca). etcd with
#                                   --client-cert-auth presents it to its own gRPC gateway, as a client too.
#
# Certificates are valid for 20 years (except the expired one), so the
# committed files do not need regenerating.
#
#   certs/make-certs.sh             all of them, CAs included
#   certs/make-certs.sh NAME...     only these (e.g. tenant-a), signed by the CAs already here
set -euo pipefail
cd "$(dirname "$0")"
days=7300
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

make_ca() { # name, subject
  key "$1.key"
  openssl req -x509 -new -key "$1.key" -sha256 -days "$days" -subj "$2" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign -out "$1.pem"
}

# sign NAME CA SUBJECT EXTENSIONS [openssl ca date options]
sign() {
  local name=$1 ca=$2 subject=$3 ext=$4
  shift 4
  key "$name.key"
  openssl req -new -key "$name.key" -subj "$subject" -out "$work/$name.csr"
  printf '%s\n' "$ext" >"$work/$name.ext"
  if [ "$#" -eq 0 ]; then
    openssl x509 -req -in "$work/$name.csr" -CA "$ca.pem" -CAkey "$ca.key" -CAcreateserial -CAserial "$work/$ca.srl" \
      -sha256 -days "$days" -extfile "$work/$name.ext" -out "$name.pem" 2>/dev/null
  else
    # `openssl ca` is the one tool in OpenSSL 3.0 that takes explicit dates.
    mkdir -p "$work/ca"
    : >"$work/ca/index.txt"
    echo 1000 >"$work/ca/serial"
    cat >"$work/ca.cnf" <<CNF
[ ca ]
default_ca = test
[ test ]
dir = $work/ca
database = \$dir/index.txt
serial = \$dir/serial
new_certs_dir = \$dir
default_md = sha256
policy = any
copy_extensions = none
[ any ]
commonName = supplied
CNF
    openssl ca -batch -config "$work/ca.cnf" -cert "$ca.pem" -keyfile "$ca.key" -in "$work/$name.csr" \
      -extfile "$work/$name.ext" -notext -out "$name.pem" "$@" 2>/dev/null
  fi
}

server_ext='basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1'
client_ext='basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth'

# leaf NAME: makes one certificate (and its key) with its CA.
leaf() {
  case "$1" in
    server) sign server ca "/CN=localhost" "$server_ext" ;;
    client) sign client ca "/CN=grove test client" "$client_ext" ;;
    other-client) sign other-client other-ca "/CN=grove other client" "$client_ext" ;;
    # Clients named by subject alternative names, as a tenant's identity is.
    tenant-a) sign tenant-a ca "/CN=grove tenant a" "$client_ext
subjectAltName=URI:grove://tenant/a" ;;
    tenant-b) sign tenant-b ca "/CN=grove tenant b" "$client_ext
subjectAltName=URI:grove://tenant/b,DNS:b.tenants.grove.test" ;;
    etcd) sign etcd ca "/CN=localhost" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1" ;;
    expired-client) sign expired-client ca "/CN=grove expired client" "$client_ext" -startdate 20200101000000Z -enddate 20200102000000Z ;;
    *) echo "make-certs.sh: no certificate named '$1'" >&2; exit 2 ;;
  esac
}

if [ "$#" -gt 0 ]; then
  # Only the named certificates, signed by the CAs already here.
  for name in "$@"; do leaf "$name"; done
else
  make_ca ca "/CN=grove test CA"
  make_ca other-ca "/CN=grove other test CA"
  for name in server client other-client tenant-a tenant-b etcd expired-client; do leaf "$name"; done
fi
chmod 644 ./*.key ./*.pem
echo "certs: made ${*:-every certificate} in $(pwd) (for tests only)"
