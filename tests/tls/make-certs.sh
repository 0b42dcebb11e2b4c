#!/usr/bin/env bash
# Makes the certificates the TLS tests use, at test time (no private key is ever committed):
#
#   make-certs.sh DIR [ID...]       (IDs default to 1 2 3)
#
# In DIR, each as NAME.pem (certificate) and NAME.key (private key, P-256):
#   ca                 the cluster's test CA
#   other-ca           another CA, that nobody trusts
#   server-ID          a server certificate naming server ID (subjectAltName URI craft:server:ID)
#   cn-server-ID       the same named by its subject CN craft-server-ID only
#   client             a client certificate (names no server id)
#   wrong-ca-server-ID a server certificate for ID signed by other-ca
#   expired-server-ID  a server certificate for ID that expired in 2020
#   new-ca, new-server-ID, new-client   a second CA and its certificates (rotation tests)
#   ca-bundle.pem      ca and new-ca together (the window of a CA rotation)
# Everything is valid for 2 days; the script needs only the openssl command.
set -euo pipefail
DIR=$1
shift
IDS=("$@")
[ ${#IDS[@]} -gt 0 ] || IDS=(1 2 3)
mkdir -p "$DIR"
cd "$DIR"

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null; }

ca() { # NAME SUBJECT
    key "$1"
    openssl req -x509 -new -key "$1.key" -out "$1.pem" -days 2 -subj "/CN=$2" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        2>/dev/null
}

leaf() { # NAME CA CN [SAN]
    local name=$1 ca=$2 cn=$3 san=${4:-}
    key "$name"
    openssl req -new -key "$name.key" -out "$name.csr" -subj "/CN=$cn" 2>/dev/null
    {
        echo "basicConstraints=CA:FALSE"
        echo "keyUsage=critical,digitalSignature"
        echo "extendedKeyUsage=serverAuth,clientAuth"
        [ -z "$san" ] || echo "subjectAltName=$san"
    } >"$name.ext"
    openssl x509 -req -in "$name.csr" -CA "$ca.pem" -CAkey "$ca.key" -CAcreateserial \
        -out "$name.pem" -days 2 -extfile "$name.ext" 2>/dev/null
    rm -f "$name.csr" "$name.ext"
}

expired() { # NAME CA CN SAN: signed with dates in the past (openssl ca can set them)
    local name=$1 ca=$2 cn=$3 san=$4
    key "$name"
    openssl req -new -key "$name.key" -out "$name.csr" -subj "/CN=$cn" 2>/dev/null
    mkdir -p ca-db
    : >ca-db/index.txt
    echo 01 >ca-db/serial
    cat >ca-db/ca.cnf <<CNF
[ca]
default_ca = test
[test]
database = ca-db/index.txt
new_certs_dir = ca-db
serial = ca-db/serial
default_md = sha256
policy = any
unique_subject = no
[any]
commonName = supplied
[ext]
basicConstraints = CA:FALSE
subjectAltName = $san
CNF
    openssl ca -batch -config ca-db/ca.cnf -cert "$ca.pem" -keyfile "$ca.key" -in "$name.csr" \
        -out "$name.pem" -startdate 20200101000000Z -enddate 20200102000000Z -extensions ext \
        -notext >/dev/null 2>&1
    rm -rf ca-db "$name.csr"
}

ca ca "craft test CA"
ca other-ca "somebody else's CA"
ca new-ca "craft test CA, next generation"
cat ca.pem new-ca.pem >ca-bundle.pem
leaf client ca "a craft client"
leaf new-client new-ca "a craft client"
for id in "${IDS[@]}"; do
    leaf "server-$id" ca "server $id" "URI:craft:server:$id"
    leaf "cn-server-$id" ca "craft-server-$id"
    leaf "wrong-ca-server-$id" other-ca "server $id" "URI:craft:server:$id"
    leaf "new-server-$id" new-ca "server $id" "URI:craft:server:$id"
    expired "expired-server-$id" ca "server $id" "URI:craft:server:$id"
done
rm -f ./*.srl
chmod 600 ./*.key
