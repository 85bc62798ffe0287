#!/usr/bin/env bash
# TEST-ONLY PKI for examples/tls.yaml and the tests. Never use these keys for anything real:
# they are public, committed to the repository.
#
# Regenerate with: examples/certs/generate.sh   (needs openssl 3)
#   ca.pem                        the CA that signs everything below
#   echo.pem, echo-key.pem        server certificate for echo.causeway.test
#   pass.pem, pass-key.pem        server certificate for pass.causeway.test (a passthrough backend)
#   terminator.pem, -key.pem      server certificate for terminator.causeway.test and 127.0.0.1
#                                 (the tunnel terminator of examples/tunnel-*.yaml)
#   client-allowed(-key).pem      client, URI SAN spiffe://causeway.test/client/allowed
#   client-denied(-key).pem       client, URI SAN spiffe://causeway.test/client/denied
set -euo pipefail
cd "$(dirname "$0")"
days=3650

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

key ca-key.pem
openssl req -x509 -new -key ca-key.pem -subj "/O=Causeway test/CN=Causeway test CA (TEST ONLY)" \
  -days "$days" -out ca.pem

# issue NAME CN SAN
issue() {
  key "$1-key.pem"
  openssl req -new -key "$1-key.pem" -subj "/O=Causeway test/CN=$2" \
    -addext "subjectAltName=$3" \
    -addext "extendedKeyUsage=serverAuth,clientAuth" \
    -addext "basicConstraints=critical,CA:FALSE" \
    -addext "keyUsage=critical,digitalSignature" |
    openssl x509 -req -CA ca.pem -CAkey ca-key.pem -CAcreateserial -copy_extensions copy \
      -days "$days" -out "$1.pem" 2>/dev/null
}

issue echo echo.causeway.test "DNS:echo.causeway.test"
issue pass pass.causeway.test "DNS:pass.causeway.test"
issue terminator terminator.causeway.test "DNS:terminator.causeway.test,IP:127.0.0.1"
issue client-allowed "client allowed" "URI:spiffe://causeway.test/client/allowed"
issue client-denied "client denied" "URI:spiffe://causeway.test/client/denied"
# The CA key is not kept: rerunning the script makes a new CA and everything under it.
rm -f ca.srl ca-key.pem
echo "test-only PKI written to $(pwd)"
