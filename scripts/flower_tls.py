#!/usr/bin/env python3
"""TLS and SuperNode keys for the authenticated case of scripts/flower_integration.sh.

    flower_tls.py DIR NODES

DIR/ca.pem, DIR/server.pem, DIR/server.key: a CA and a certificate for 127.0.0.1 signed by it
(what `flower-superlink --ssl-ca-certfile --ssl-certfile --ssl-keyfile` takes);
DIR/node<i>.key, DIR/node<i>.pub for i < NODES: ECDSA P-384 key pairs in OpenSSH format, as
`ssh-keygen -t ecdsa -b 384` writes them (what `flwr supernode register` and `--key` take).
"""

import datetime
import ipaddress
import os
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def write(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def main() -> None:
    out, nodes = sys.argv[1], int(sys.argv[2])
    os.makedirs(out, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Frugal test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP384R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                       x509.DNSName("localhost")]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    write(os.path.join(out, "ca.pem"), ca.public_bytes(serialization.Encoding.PEM))
    write(os.path.join(out, "server.pem"), cert.public_bytes(serialization.Encoding.PEM))
    write(os.path.join(out, "server.key"), key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                             serialization.NoEncryption()))
    for i in range(nodes):
        k = ec.generate_private_key(ec.SECP384R1())
        write(os.path.join(out, f"node{i}.key"), k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                                                 serialization.NoEncryption()))
        write(os.path.join(out, f"node{i}.pub"), k.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                                             serialization.PublicFormat.OpenSSH))


if __name__ == "__main__":
    main()
