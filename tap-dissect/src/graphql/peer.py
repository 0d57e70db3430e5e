"""A GraphQL server for the GraphQL oracle test: graphql-core (the Python port
of the reference implementation) behind http.server, HTTP/1.1.

    graphql_peer.py PORT LOG    serves /graphql on 127.0.0.1:PORT until killed

It takes GraphQL over HTTP as clients send it: POST with a JSON body (one
operation, or an array: a batch), POST with application/graphql, GET with
?query=. For every request it appends one JSON line to LOG with what
graphql-core made of it: {"method", "path", "ops": [{"type", "name",
"errors", "data"}]} ("type" is null when the document does not parse), and
"batched" (the batch's length, 0 when not batched); any other path answers
404 and logs "ops": null.
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlsplit

from graphql import GraphQLError, build_schema, get_operation_ast, graphql_sync, parse

SCHEMA = build_schema(
    """
    type Query { hello(name: String): String, user(id: ID!): User, users: [User] }
    type Mutation { addUser(name: String!): User }
    type User { id: ID!, name: String }
    """
)

USERS = [{"id": "1", "name": "ada"}, {"id": "2", "name": "grace"}]


class Root:
    def hello(self, info, name="world"):
        return f"hello {name}"

    def user(self, info, id):
        return next((u for u in USERS if u["id"] == id), None)

    def users(self, info):
        return USERS

    def addUser(self, info, name):
        user = {"id": str(len(USERS) + 1), "name": name}
        USERS.append(user)
        return user


def run(source, operation_name, variables):
    """Executes one operation; returns its JSON result and the log's view of it."""
    try:
        op = get_operation_ast(parse(source), operation_name)
    except GraphQLError:
        op = None
    result = graphql_sync(
        SCHEMA,
        source,
        root_value=Root(),
        variable_values=variables,
        operation_name=operation_name,
    )
    out = {}
    if result.errors:
        out["errors"] = [e.formatted for e in result.errors]
    if result.data is not None or not result.errors:
        out["data"] = result.data
    seen = {
        "type": op.operation.value if op else None,
        "name": operation_name or (op.name.value if op and op.name else ""),
        "errors": len(result.errors or []),
        "data": result.data is not None,
    }
    return out, seen


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    log_path = None

    def log_message(self, *args):
        pass

    def answer(self, status, body, log):
        with open(self.log_path, "a") as f:
            f.write(json.dumps({"method": self.command, "path": self.path, **log}) + "\n")
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urlsplit(self.path)
        if url.path != "/graphql":
            return self.answer(404, {"error": "not found"}, {"ops": None})
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        variables = json.loads(q["variables"]) if "variables" in q else None
        result, seen = run(q.get("query", ""), q.get("operationName"), variables)
        self.answer(200, result, {"ops": [seen], "batched": 0})

    def do_POST(self):
        url = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if url.path != "/graphql":
            return self.answer(404, {"error": "not found"}, {"ops": None})
        if self.headers.get("Content-Type", "").startswith("application/graphql"):
            name = parse_qs(url.query).get("operationName", [None])[0]
            result, seen = run(body.decode(), name, None)
            return self.answer(200, result, {"ops": [seen], "batched": 0})
        try:
            request = json.loads(body)
        except ValueError:
            return self.answer(400, {"error": "not JSON"}, {"ops": [{"type": None}]})
        batch = request if isinstance(request, list) else [request]
        results, ops = [], []
        for r in batch:
            query = r.get("query") if isinstance(r, dict) else None
            if not isinstance(query, str):
                results.append({"errors": [{"message": "no query"}]})
                ops.append({"type": None})
                continue
            result, seen = run(query, r.get("operationName"), r.get("variables"))
            results.append(result)
            ops.append(seen)
        log = {"ops": ops, "batched": len(batch) if isinstance(request, list) else 0}
        self.answer(200, results if isinstance(request, list) else results[0], log)


def main():
    port, Handler.log_path = int(sys.argv[1]), sys.argv[2]
    HTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
