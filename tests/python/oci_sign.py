"""Signs requests with the official `oci` Python SDK (the reference signer).

Used two ways:
  * imported by gen_oci_fixtures.py to produce the committed fixtures;
  * run as a script by tests/oci_signer.rs for the live cross-check: reads
    {"tenancy","user","fingerprint","key_file","pass_phrase","requests":[
    {"method","url","date","content_type","body_b64"}]} as JSON on stdin and
    prints a JSON list of {"url","headers":{...},"authorization"} on stdout.

The request goes through `requests.Request(...).prepare()` exactly like the
SDK's own clients, so the URL (re-quoting), host and Content-Length are the
ones the SDK would put on the wire.
"""

import base64
import json
import sys

import oci
import requests

SIGNED = ("date", "host", "content-length", "content-type", "x-content-sha256")


def make_signer(tenancy, user, fingerprint, key_file, pass_phrase=None):
    return oci.signer.Signer(
        tenancy, user, fingerprint,
        private_key_file_location=key_file,
        pass_phrase=pass_phrase,
    )


def sign(signer, method, url, date, body=None, content_type="application/json"):
    """Returns (url as sent, signed headers, authorization) for one request."""
    headers = {"date": date, "content-type": content_type}
    prepared = requests.Request(method, url, headers=headers, data=body).prepare()
    signer(prepared)
    out = {}
    for name in SIGNED:
        if name in prepared.headers:
            out[name] = prepared.headers[name]
    if method.upper() in ("GET", "DELETE", "HEAD"):
        # Injected by the SDK but not signed and not part of our header set.
        out.pop("content-type", None)
        out.pop("content-length", None)
    return prepared.url, out, prepared.headers["authorization"]


def main():
    spec = json.load(sys.stdin)
    signer = make_signer(
        spec["tenancy"], spec["user"], spec["fingerprint"],
        spec["key_file"], spec.get("pass_phrase"),
    )
    results = []
    for req in spec["requests"]:
        body = base64.b64decode(req["body_b64"]) if req.get("body_b64") is not None else None
        url, headers, auth = sign(
            signer, req["method"], req["url"], req["date"], body, req["content_type"]
        )
        results.append({"url": url, "headers": headers, "authorization": auth})
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
