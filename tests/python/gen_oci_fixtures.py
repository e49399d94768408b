"""Regenerates tests/fixtures/oci/ with the official `oci` Python SDK.

Run from the repository root:  .venv/bin/python tests/python/gen_oci_fixtures.py

Writes RSA keys in every format the client must accept (PKCS#8, PKCS#1,
encrypted PKCS#8, console download with the trailing OCI_API_KEY line, CRLF)
plus ones it must refuse (legacy Proc-Type encryption, EC, a public key), and
signatures.json: for each accepted key and each request, the headers and
Authorization value the SDK produces for a fixed date. tests/oci_signer.rs
demands byte-identical output from the Rust signer.
"""

import base64
import hashlib
import json
import os
import sys

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import oci_sign  # noqa: E402

OUT = os.path.join("tests", "fixtures", "oci")
KEYS = os.path.join(OUT, "keys")
PASS_PHRASE = "correct horse battery staple"
TENANCY = "ocid1.tenancy.oc1..aaaaaaaafixturetenancy"
USER = "ocid1.user.oc1..aaaaaaaafixtureuser"
DATE = "Thu, 05 Jan 2014 21:31:40 GMT"

INSTANCE = "ocid1.instance.oc1.iad.anuwcljtfixtureinstance"
REQUESTS = [
    # name, method, url, body (bytes or None), content type
    ("get_instance", "GET",
     "https://iaas.us-ashburn-1.oraclecloud.com/20160918/instances/" + INSTANCE, None,
     "application/json"),
    ("post_action_with_body", "POST",
     "https://iaas.us-ashburn-1.oraclecloud.com/20160918/instances/" + INSTANCE + "?action=SOFTRESET",
     b'{"actionType":"softreset","allowDenseRebootMigration":true}', "application/json"),
    ("post_action_empty_body", "POST",
     "https://iaas.us-ashburn-1.oraclecloud.com/20160918/instances/" + INSTANCE + "?action=STOP",
     None, "application/json"),
    ("get_with_port", "GET",
     "http://127.0.0.1:8443/20160918/instances/" + INSTANCE, None, "application/json"),
    ("post_with_port", "POST",
     "http://localhost:18080/20160918/instances/" + INSTANCE + "?action=START",
     b"", "application/json"),
    ("query_special_characters", "GET",
     "https://iaas.eu-frankfurt-1.oraclecloud.com/20160918/instances?compartmentId=ocid1.compartment.oc1..aaaa&displayName=web%20node%2B1&sortBy=TIMECREATED&page=a%2Fb%3Dc",
     None, "application/json"),
    ("put_utf8_body", "PUT",
     "https://iaas.us-phoenix-1.oraclecloud.com/20160918/instances/" + INSTANCE,
     '{"displayName":"n\u00f6de \u2603"}'.encode("utf-8"), "application/json"),
    ("delete_instance", "DELETE",
     "https://iaas.ap-tokyo-1.oraclecloud.com/20160918/instances/" + INSTANCE + "?preserveBootVolume=true",
     None, "application/json"),
]


def fingerprint(private_key):
    der = private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = hashlib.md5(der).hexdigest()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def write(name, data):
    path = os.path.join(KEYS, name)
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)
    return path


def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def main():
    os.makedirs(KEYS, exist_ok=True)
    P = serialization.PrivateFormat
    E = serialization.Encoding
    keys = []  # (name, file, pass_phrase, key object)

    k = rsa_key()
    write("pkcs8.pem", k.private_bytes(E.PEM, P.PKCS8, serialization.NoEncryption()))
    keys.append(("pkcs8", "pkcs8.pem", None, k))

    k = rsa_key()
    write("pkcs1.pem", k.private_bytes(E.PEM, P.TraditionalOpenSSL, serialization.NoEncryption()))
    keys.append(("pkcs1", "pkcs1.pem", None, k))

    k = rsa_key()
    enc = serialization.BestAvailableEncryption(PASS_PHRASE.encode())
    write("pkcs8_encrypted.pem", k.private_bytes(E.PEM, P.PKCS8, enc))
    keys.append(("pkcs8_encrypted", "pkcs8_encrypted.pem", PASS_PHRASE, k))

    k = rsa_key()
    pem = k.private_bytes(E.PEM, P.PKCS8, serialization.NoEncryption())
    write("console_oci_api_key.pem", b"\n" + pem + b"OCI_API_KEY\n")
    keys.append(("console_oci_api_key", "console_oci_api_key.pem", None, k))

    k = rsa_key()
    pem = k.private_bytes(E.PEM, P.TraditionalOpenSSL, serialization.NoEncryption())
    write("pkcs1_crlf.pem", pem.replace(b"\n", b"\r\n") + b"\r\n")
    keys.append(("pkcs1_crlf", "pkcs1_crlf.pem", None, k))

    # Must be refused with a precise error.
    legacy = rsa_key()
    write("legacy_encrypted.pem", legacy.private_bytes(E.PEM, P.TraditionalOpenSSL, enc))
    ec_key = ec.generate_private_key(ec.SECP256R1())
    write("ec_p256.pem", ec_key.private_bytes(E.PEM, P.PKCS8, serialization.NoEncryption()))
    pub = keys[0][3].public_key().public_bytes(E.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    write("public.pem", pub)
    write("garbage.pem", b"this is not a key\n")

    cases = []
    key_entries = []
    for name, file, pp, key in keys:
        fp = fingerprint(key)
        # The SDK loads the file itself, exactly as it would a user's key_file.
        signer = oci_sign.make_signer(TENANCY, USER, fp, os.path.join(KEYS, file), pp)
        key_entries.append({"name": name, "file": file, "pass_phrase": pp, "fingerprint": fp})
        for rname, method, url, body, ct in REQUESTS:
            sent_url, headers, auth = oci_sign.sign(signer, method, url, DATE, body, ct)
            cases.append({
                "name": f"{name}/{rname}",
                "key": name,
                "method": method,
                "url": sent_url,
                "date": DATE,
                "content_type": ct,
                "body_b64": base64.b64encode(body).decode() if body is not None else None,
                "expected_headers": headers,
                "expected_authorization": auth,
            })

    doc = {
        "generator": "tests/python/gen_oci_fixtures.py",
        "oci_sdk_version": __import__("oci").__version__,
        "tenancy": TENANCY,
        "user": USER,
        "keys": key_entries,
        "legacy_key": {"file": "legacy_encrypted.pem", "pass_phrase": PASS_PHRASE},
        "cases": cases,
    }
    with open(os.path.join(OUT, "signatures.json"), "w") as f:
        json.dump(doc, f, indent=2, sort_keys=True)
        f.write("\n")
    print(f"wrote {len(key_entries)} keys and {len(cases)} cases to {OUT}")


if __name__ == "__main__":
    main()
