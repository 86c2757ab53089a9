"""A loopback server that speaks the Hugging Face Hub endpoints ``huggingface_hub`` uses for model repos.

Downloads: ``GET /api/models/REPO/revision/REV`` (repo info), ``GET /api/models/REPO/tree/REV``
(file list), ``HEAD``/``GET /REPO/resolve/REV/PATH`` (with ``X-Repo-Commit`` and ``ETag``).
Uploads: ``POST /api/repos/create``, ``POST /api/validate-yaml`` (a card's front matter), ``POST /api/models/REPO/preupload/REV`` (every file
"regular": the real Hub sends large binaries to LFS/Xet storage, which this server does not
speak) and ``POST /api/models/REPO/commit/REV`` (NDJSON, base64 files). Commits get content
hashes; branches move; every request is recorded in ``requests``.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import threading
from urllib.parse import unquote, urlparse


class FakeHub:
    """The server; ``endpoint`` is its base URL (give it as ``HF_ENDPOINT``)."""

    def __init__(self):
        self.repos: dict[str, dict[str, dict[str, bytes]]] = {}  # repo -> commit sha -> files
        self.refs: dict[str, dict[str, str]] = {}  # repo -> ref name -> commit sha
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _reply(self, status, body=b"", headers=None, head=False):
                self.send_response(status)
                headers = dict(headers or {})
                headers.setdefault("Content-Length", str(len(body)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def _json(self, status, value):
                self._reply(status, json.dumps(value).encode(), {"Content-Type": "application/json"})

            def _body(self):
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def do_HEAD(self):
                self._route("HEAD")

            def do_GET(self):
                self._route("GET")

            def do_POST(self):
                self._route("POST")

            def _route(self, method):
                path = unquote(urlparse(self.path).path)
                hub.requests.append((method, path))
                parts = path.strip("/").split("/")
                try:
                    if parts[:2] == ["api", "models"] and "revision" in parts:
                        i = parts.index("revision")
                        repo, rev = "/".join(parts[2:i]), "/".join(parts[i + 1 :])
                        sha = hub.resolve(repo, rev)
                        if sha is None:
                            code = "RevisionNotFound" if repo in hub.repos else "RepoNotFound"
                            body = json.dumps({"error": code}).encode()
                            return self._reply(404, body, {"X-Error-Code": code, "Content-Type": "application/json"})
                        files = hub.repos[repo][sha]
                        return self._json(
                            200,
                            {
                                "id": repo,
                                "modelId": repo,
                                "sha": sha,
                                "siblings": [{"rfilename": f} for f in sorted(files)],
                            },
                        )
                    if parts[:2] == ["api", "models"] and "tree" in parts:
                        i = parts.index("tree")
                        repo, rev = "/".join(parts[2:i]), parts[i + 1]
                        sha = hub.resolve(repo, rev)
                        if sha is None:
                            return self._json(404, {"error": "Revision not found"})
                        files = hub.repos[repo][sha]
                        entries = [
                            {
                                "type": "file",
                                "path": name,
                                "size": len(data),
                                "oid": hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest(),
                            }
                            for name, data in sorted(files.items())
                        ]
                        return self._json(200, entries)
                    if len(parts) >= 4 and parts[2] == "resolve":
                        repo, rev, name = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
                        sha = hub.resolve(repo, rev)
                        if sha is None or name not in hub.repos[repo][sha]:
                            return self._reply(404, b"", {"X-Error-Code": "EntryNotFound"}, head=method == "HEAD")
                        data = hub.repos[repo][sha][name]
                        etag = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
                        return self._reply(
                            200, data, {"X-Repo-Commit": sha, "ETag": f'"{etag}"'}, head=method == "HEAD"
                        )
                    if path == "/api/validate-yaml" and method == "POST":  # model cards' front matter
                        self._body()
                        return self._json(200, {"errors": [], "warnings": []})
                    if path == "/api/repos/create" and method == "POST":
                        body = json.loads(self._body() or b"{}")
                        repo = f"{body['organization']}/{body['name']}" if body.get("organization") else body["name"]
                        with hub.lock:
                            existed = repo in hub.repos
                            hub.repos.setdefault(repo, {})
                            hub.refs.setdefault(repo, {})
                        if existed:
                            return self._json(
                                409, {"error": "You already created this model repo", "url": f"{hub.endpoint}/{repo}"}
                            )
                        return self._json(200, {"url": f"{hub.endpoint}/{repo}", "name": repo})
                    if parts[:2] == ["api", "models"] and "preupload" in parts:
                        i = parts.index("preupload")
                        body = json.loads(self._body())
                        return self._json(
                            200,
                            {
                                "files": [
                                    {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                    for f in body["files"]
                                ],
                                "commitOid": None,
                            },
                        )
                    if parts[:2] == ["api", "models"] and "commit" in parts:
                        i = parts.index("commit")
                        repo, rev = "/".join(parts[2:i]), "/".join(parts[i + 1 :])
                        lines = [json.loads(line) for line in self._body().decode().splitlines() if line.strip()]
                        return self._json(200, hub.commit(repo, rev, lines))
                    return self._json(404, {"error": f"no route {method} {path}"})
                except Exception as exc:
                    return self._json(500, {"error": repr(exc)})

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def resolve(self, repo, rev):
        if repo not in self.repos:
            return None
        if rev in self.repos[repo]:
            return rev
        return self.refs[repo].get(rev)

    def commit(self, repo, rev, lines):
        with self.lock:
            parent = self.refs[repo].get(rev)
            files = dict(self.repos[repo][parent]) if parent else {}
            for line in lines:
                if line["key"] == "file":
                    value = line["value"]
                    files[value["path"]] = base64.b64decode(value["content"])
                elif line["key"] == "deletedFile":
                    files.pop(line["value"]["path"], None)
            sha = hashlib.sha1(
                json.dumps(sorted((k, hashlib.sha1(v).hexdigest()) for k, v in files.items())).encode()
                + (parent or "").encode()
            ).hexdigest()
            self.repos[repo][sha] = files
            self.refs[repo][rev] = sha
            return {"commitUrl": f"{self.endpoint}/{repo}/commit/{sha}", "commitOid": sha, "success": True}

    def close(self):
        self.httpd.shutdown()
