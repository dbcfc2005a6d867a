#!/usr/bin/env python3
"""Test support: a small proxy in front of fake-gcs-server that makes GCS's XML API whole.

`object_store` speaks GCS's XML API. fake-gcs-server serves XML reads (GET, HEAD, list) but
rejects XML writes, and ignores generation preconditions on uploads. This proxy forwards reads
unchanged and translates writes to fake-gcs-server's JSON API:

  PUT    /B/NAME                        simple upload (x-goog-if-generation-match enforced here)
  PUT    /B/NAME  + x-goog-copy-source  copy (x-goog-if-generation-match: 0 enforced here)
  POST   /B/NAME?uploads                multipart initiate (parts kept in this process)
  PUT    /B/NAME?partNumber=N&uploadId  multipart part
  POST   /B/NAME?uploadId=U             multipart complete (parts joined, one upload)
  DELETE /B/NAME?uploadId=U             multipart abort
  DELETE /B/NAME                        delete

Conditional writes are checked and applied under one lock, so two racing conditional writes
cannot both succeed. Nothing the product needs: only the test scripts start this.

Usage: gcs-proxy.py LISTEN_PORT UPSTREAM_HOST:PORT
"""

import hashlib
import http.client
import http.server
import json
import re
import sys
import threading
import urllib.parse
import uuid

UPSTREAM = sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1:4443"
LOCK = threading.Lock()
UPLOADS = {}  # upload id -> {part number: bytes}


def upstream(method, path, body=None, headers=None):
    """One request to fake-gcs-server; returns (status, headers, body)."""
    conn = http.client.HTTPConnection(UPSTREAM, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.getheaders(), resp.read()
    finally:
        conn.close()


def current_generation(bucket, name):
    """The object's generation, or 0 when it does not exist."""
    status, _, body = upstream(
        "GET", f"/storage/v1/b/{q(bucket)}/o/{q(name)}"
    )
    if status == 404:
        return 0
    if status != 200:
        raise RuntimeError(f"metadata lookup failed: {status} {body[:200]!r}")
    return int(json.loads(body)["generation"])


def q(part):
    return urllib.parse.quote(part, safe="")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet: the tests read their own output
        pass

    # --- helpers ---------------------------------------------------------------------------
    def target(self):
        url = urllib.parse.urlsplit(self.path)
        parts = url.path.lstrip("/").split("/", 1)
        bucket = urllib.parse.unquote(parts[0])
        name = urllib.parse.unquote(parts[1]) if len(parts) > 1 else ""
        return bucket, name, urllib.parse.parse_qs(url.query, keep_blank_values=True)

    def body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def reply(self, status, body=b"", headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def error(self, status, code, message):
        xml = (
            f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
            f"<Message>{message}</Message></Error>"
        ).encode()
        self.reply(status, xml, [("Content-Type", "application/xml")])

    def upload(self, bucket, name, data, content_type):
        """Uploads through the JSON API; replies with the XML API's headers."""
        status, _, body = upstream(
            "POST",
            f"/upload/storage/v1/b/{q(bucket)}/o?uploadType=media&name={q(name)}",
            body=data,
            headers={"Content-Type": content_type or "application/octet-stream"},
        )
        if status != 200:
            self.reply(status, body)
            return None
        meta = json.loads(body)
        return meta

    def precondition_failed(self, bucket, name):
        want = self.headers.get("x-goog-if-generation-match")
        if want is None:
            return False
        if current_generation(bucket, name) != int(want):
            self.error(412, "PreconditionFailed", "generation does not match")
            return True
        return False

    # --- methods ---------------------------------------------------------------------------
    def forward(self):
        headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
        headers["Host"] = UPSTREAM
        status, resp_headers, body = upstream(self.command, self.path, headers=headers)
        keep = [(k, v) for k, v in resp_headers if k.lower() not in ("content-length", "transfer-encoding", "connection")]
        if self.command == "HEAD":
            length = dict((k.lower(), v) for k, v in resp_headers).get("content-length", "0")
            self.send_response(status)
            for k, v in keep:
                self.send_header(k, v)
            self.send_header("Content-Length", length)
            self.end_headers()
            return
        self.reply(status, body, keep)

    def guarded(self, handler):
        """fake-gcs-server down (a test's outage): 503, which clients retry later."""
        try:
            handler()
        except OSError as e:
            self.error(503, "ServiceUnavailable", f"upstream unreachable: {e}")

    def do_GET(self):
        self.guarded(self.forward)

    def do_HEAD(self):
        self.guarded(self.forward)

    def do_PUT(self):
        self.guarded(self.put)

    def do_POST(self):
        self.guarded(self.post)

    def do_DELETE(self):
        self.guarded(self.delete)

    def put(self):
        bucket, name, query = self.target()
        data = self.body()
        if "uploadId" in query:
            upload_id = query["uploadId"][0]
            with LOCK:
                if upload_id not in UPLOADS:
                    return self.error(404, "NoSuchUpload", upload_id)
                UPLOADS[upload_id][int(query["partNumber"][0])] = data
            return self.reply(200, b"", [("ETag", f'"{hashlib.md5(data).hexdigest()}"')])
        source = self.headers.get("x-goog-copy-source")
        with LOCK:
            if self.precondition_failed(bucket, name):
                return
            if source is not None:
                src_bucket, src_name = source.split("/", 1)
                src_name = urllib.parse.unquote(src_name)
                status, _, body = upstream(
                    "POST",
                    f"/storage/v1/b/{q(urllib.parse.unquote(src_bucket))}/o/{q(src_name)}"
                    f"/copyTo/b/{q(bucket)}/o/{q(name)}",
                    body=b"",
                    headers={"Content-Type": "application/json"},
                )
                return self.reply(status, b"" if status == 200 else body)
            meta = self.upload(bucket, name, data, self.headers.get("Content-Type"))
        if meta is not None:
            self.reply(200, b"", [("ETag", f'"{meta["etag"]}"'), ("x-goog-generation", str(meta["generation"]))])

    def post(self):
        bucket, name, query = self.target()
        data = self.body()
        if "uploads" in query:
            upload_id = uuid.uuid4().hex
            with LOCK:
                UPLOADS[upload_id] = {}
            xml = (
                "<?xml version='1.0' encoding='UTF-8'?><InitiateMultipartUploadResult>"
                f"<Bucket>{bucket}</Bucket><Key>{name}</Key><UploadId>{upload_id}</UploadId>"
                "</InitiateMultipartUploadResult>"
            ).encode()
            return self.reply(200, xml, [("Content-Type", "application/xml")])
        if "uploadId" in query:
            upload_id = query["uploadId"][0]
            numbers = [int(n) for n in re.findall(rb"<PartNumber>(\d+)</PartNumber>", data)]
            with LOCK:
                parts = UPLOADS.pop(upload_id, None)
                if parts is None:
                    return self.error(404, "NoSuchUpload", upload_id)
                if any(n not in parts for n in numbers):
                    return self.error(400, "InvalidPart", "a listed part was never uploaded")
                meta = self.upload(bucket, name, b"".join(parts[n] for n in numbers), None)
            if meta is None:
                return
            xml = (
                "<?xml version='1.0' encoding='UTF-8'?><CompleteMultipartUploadResult>"
                f"<Bucket>{bucket}</Bucket><Key>{name}</Key><ETag>\"{meta['etag']}\"</ETag>"
                "</CompleteMultipartUploadResult>"
            ).encode()
            return self.reply(200, xml, [("Content-Type", "application/xml"), ("x-goog-generation", str(meta["generation"]))])
        self.error(400, "InvalidRequest", "unsupported POST")

    def delete(self):
        bucket, name, query = self.target()
        if "uploadId" in query:
            with LOCK:
                UPLOADS.pop(query["uploadId"][0], None)
            return self.reply(204)
        with LOCK:
            status, _, body = upstream("DELETE", f"/storage/v1/b/{q(bucket)}/o/{q(name)}")
        if status in (200, 204):
            return self.reply(204)
        if status == 404:
            return self.error(404, "NoSuchKey", name)
        self.reply(status, body)


def main():
    port = int(sys.argv[1])
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
