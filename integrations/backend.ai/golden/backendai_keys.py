#!/usr/bin/env python3
"""Golden etcd keys of Backend.AI's AppProxy coordinator, from its own code.

For a set of scenarios (a worker, the coordinator's settings, circuits), this
runs Backend.AI's REAL code, cut out of two source trees (see _runtime.py):

- the base commit (--source): Circuit.traefik_routers, traefik_services,
  get_traefik_middlewares, called by the real
  CircuitManager.initialize_traefik_circuits -> "unpatched";
- the same tree with integrations/backend.ai/traefik-sd-coordinator.patch
  applied (--patched): Circuit.get_traefik_routers(conf), traefik_services,
  get_traefik_middlewares(conf) through the patched
  initialize_traefik_circuits, with [proxy_coordinator.traefik.traefik_sd]
  off ("patched_off") and on ("patched_on"), and the patched
  CircuitManager._traefik_publish_batches ("batches_off", "batches_on").

The keys are what the real TraefikEtcd.atomic_replace_prefixes puts
(convert_to_etcd_dict, _flatten_nested_dict, TraefikEtcd._mangle_key:
"<namespace>/<key>", values str(v)), into an in-memory etcd, for all the
scenario's circuits as initialize_traefik_circuits writes them at start-up;
"txn_puts_*" are the puts of each of its transactions. The Go test
internal/coordinator/golden_test.go holds the stand-in
(internal/coordinator/coordinator.go) to this file.

Regenerate (Python 3.11+ with pydantic 2; Backend.AI's sources are parsed
with a Python 3.12+, found on PATH or under ~/.pyenv, or --ast-python):

    BASE=c0032c472e4b40e0eb012bdd1cd3f081854dd891
    PATHS="src/ai/backend/appproxy src/ai/backend/common/etcd.py"
    mkdir -p /tmp/bai-base /tmp/bai-patched
    git -C /path/to/backend.ai archive $BASE $PATHS | tar -x -C /tmp/bai-base
    git -C /path/to/backend.ai archive $BASE $PATHS | tar -x -C /tmp/bai-patched
    (cd /tmp/bai-patched && git apply --include='src/*' \\
        "$OLDPWD/integrations/backend.ai/traefik-sd-coordinator.patch")
    python3 integrations/backend.ai/golden/backendai_keys.py \\
        --source /tmp/bai-base --patched /tmp/bai-patched \\
        > testdata/coordinator/backendai-keys.json

(A full checkout at the base commit, and a second one with the patch applied,
serve as well.) The output is deterministic: sorted keys, 2-space indent.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import re
import sys
from datetime import UTC, datetime
from types import SimpleNamespace
from uuid import UUID

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _runtime import Backend, find_ast_python  # noqa: E402

BASE_COMMIT = "c0032c472e4b40e0eb012bdd1cd3f081854dd891"

# The stand-in's conventions (internal/coordinator/coordinator.go).
WORKER_ID = "00000000-0000-4000-8000-00000000c0de"
CREATED_AT = "2026-11-24T10:00:00+00:00"
MARKER = "/var/lib/backend.ai/appproxy/worker/last-used-time-marker.socket"
ALLOWED = "10.0.0.0/8,192.168.1.0/24"


def worker(**kw) -> dict:
    w = {
        "id": WORKER_ID,
        "authority": "worker-1",
        "hostname": "proxy.example.com",
        "wildcard_domain": None,
        "tls_listen": False,
        "traefik_last_used_marker_path": MARKER,
    }
    w.update(kw)
    return w


def route(session_id: str, host: str | None, port: int, route_id: str | None = None) -> dict:
    return {
        "route_id": route_id,
        "session_id": session_id,
        "session_name": f"session-{session_id}",
        "kernel_host": host,
        "kernel_port": port,
    }


def circuit(cid: str, app: str, routes: list[dict], *, protocol="http", app_mode="interactive",
            frontend_mode="port", port=None, subdomain=None, allowed=None, health=None) -> dict:
    return {
        "id": cid,
        "app": app,
        "protocol": protocol,
        "app_mode": app_mode,
        "frontend_mode": frontend_mode,
        "port": port,
        "subdomain": subdomain,
        "allowed_client_ips": allowed,
        "endpoint_id": "e0e1e2e3-aaaa-4bbb-8ccc-" + cid[-12:] if app_mode == "inference" else None,
        "health_check": health,
        "routes": routes,
    }


HEALTH = {"path": "/health", "interval": 10, "max_wait_time": 5}
SD_DEFAULT = {"plugin_name": "traefik-sd", "sidecar_url": None, "metrics_port": None, "metrics_path": None}
SD_ALL = {"plugin_name": "my-traefik-sd", "sidecar_url": "http://127.0.0.1:9180", "metrics_port": 9100,
          "metrics_path": "/metrics"}

INTERACTIVE = "3f0f2a9e-6c8e-4d55-9f0c-7f0e8a1b2c3d"
INFERENCE = "0b5c9e7a-2d41-4f3e-8a6b-1c2d3e4f5a6b"
SESSION = "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d"


def inference_routes(prefix: str, n: int, subnet: str) -> list[dict]:
    return [
        route(f"{prefix}-bbbb-4ccc-8ddd-{r:012d}", f"{subnet}.{r + 1}", 8000,
              route_id=f"{prefix}-aaaa-4bbb-8ccc-{r:012d}")
        for r in range(n)
    ]


def inference_set(route_counts: list[int], health: dict | None) -> list[dict]:
    """Inference circuits of these route counts (ids tell the counts apart)."""
    out = []
    for i, routes in enumerate(route_counts):
        prefix = f"{routes:02d}{1 if health else 0}{len(route_counts)}{i:04d}"
        out.append(circuit(f"{prefix}-1111-4222-8333-444455556666", "llama-chat",
                           inference_routes(prefix, routes, f"10.{routes}.{i}"), app_mode="inference",
                           port=10205 + i, health=health))
    return out


def five(routes: int, health: dict | None) -> list[dict]:
    return inference_set([routes] * 5, health)


def scenario(name: str, circuits: list[dict], *, w: dict | None = None, strategy=None, sd=None) -> dict:
    return {
        "name": name,
        "inputs": {
            "namespace": "backend",
            "worker": w or worker(),
            "secrets": {"jwt_secret": "golden-jwt-secret-7b3e0f1c",
                        "permit_hash_secret": "golden-permit-hash-f0e1d2c3"},
            "client_ip_strategy": strategy,
            # The setting for "patched_on"; "patched_off" is the same with enabled = false.
            "traefik_sd": dict(sd or SD_DEFAULT, enabled=True),
            "created_at": CREATED_AT,
            "circuits": circuits,
        },
    }


SCENARIOS = [
    scenario("interactive-http-wildcard", [
        circuit(INTERACTIVE, "jupyter", [route(SESSION, "10.0.1.5", 8080)],
                frontend_mode="wildcard", subdomain="jupyter"),
    ], w=worker(wildcard_domain=".example.com", hostname="worker-1.example.com")),
    scenario("inference-http-port-health-check", [
        circuit(INFERENCE, "llama-chat", inference_routes("0b5c9e7a", 2, "10.0.2"),
                app_mode="inference", port=10205, health=HEALTH),
    ]),
    scenario("interactive-allowlist-tls-depth", [
        circuit("5d1e7c0a-9b8f-4e6d-8c5b-4a3f2e1d0c9b", "jupyter", [route(SESSION, "10.0.1.6", 8080)],
                port=10206, allowed=ALLOWED),
    ], w=worker(tls_listen=True), strategy={"depth": 2}),
    scenario("interactive-allowlist-excluded-ips", [
        circuit("6e2f8d1b-0c9a-4f7e-9d6c-5b4a3f2e1d0c", "jupyter", [route(SESSION, "10.0.1.7", 8080)],
                port=10207, allowed=ALLOWED),
    ], strategy={"excluded_ips": ["172.16.0.0/12"]}),
    scenario("null-kernel-host", [
        circuit("7f3a9e2c-1d0b-4a8f-8e7d-6c5b4a3f2e1d", "vscode", [route(SESSION, None, 8180)], port=10208),
        circuit("8a4b0f3d-2e1c-4b9a-9f8e-7d6c5b4a3f2e", "llama-chat",
                [route("8a4b0f3d-bbbb-4ccc-8ddd-000000000000", "10.0.3.1", 8000,
                       route_id="8a4b0f3d-aaaa-4bbb-8ccc-000000000000"),
                 route("8a4b0f3d-bbbb-4ccc-8ddd-000000000001", None, 8001,
                       route_id="8a4b0f3d-aaaa-4bbb-8ccc-000000000001")],
                app_mode="inference", port=10209),
    ]),
    scenario("null-last-used-marker-path", [
        circuit("9b5c1a4e-3f2d-4cab-8a9f-8e7d6c5b4a3f", "jupyter", [route(SESSION, "10.0.1.8", 8080)],
                port=10210),
    ], w=worker(traefik_last_used_marker_path=None)),
    scenario("allowlist-normalized", [
        # ClientIPValidator: entries stripped, bare IPs as /32 or /128, host bits
        # cleared, blank and invalid entries skipped; the circuit JSON keeps the raw string.
        circuit("bd7e3c6a-5b4f-4ecd-8cba-0a9f8e7d6c5b", "jupyter", [route(SESSION, "10.0.1.11", 8080)],
                port=10213, allowed="10.1.2.3, 192.168.1.7/24,,fd00::1/64,not-an-ip"),
        circuit("ce8f4d7b-6c5a-4fde-9dcb-1b0a9f8e7d6c", "ssh", [route(SESSION, "10.0.1.12", 2200)],
                protocol="tcp", port=10223, allowed="10.1.2.3, 192.168.1.7/24,,fd00::1/64,not-an-ip"),
    ]),
    scenario("interactive-two-routes-one-session", [
        # Circuit.create: session_ids = [r.session_id for r in route_info], repeats kept.
        circuit("df9a5e8c-7d6b-4aef-8edc-2c1b0a9f8e7d", "jupyter",
                [route(SESSION, "10.0.1.13", 8080), route(SESSION, "10.0.1.14", 8080)], port=10214),
    ]),
    scenario("plugin-name-quoting", [
        # Keys are quote(k, safe=""): the plugin name is a key.
        circuit(INTERACTIVE, "jupyter", [route(SESSION, "10.0.1.5", 8080)], port=10215),
    ], sd=dict(SD_DEFAULT, plugin_name="traefik-sd@local:v1")),
    scenario("tcp-port-allowlist", [
        circuit("ac6d2b5f-4a3e-4dbc-9baf-9f8e7d6c5b4a", "ssh",
                [route(SESSION, "10.0.1.9", 2200), route("1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f", "10.0.1.10", 2201)],
                protocol="tcp", port=10222, allowed=ALLOWED),
    ]),
    scenario("traefik-sd-every-option", [
        circuit(INTERACTIVE, "jupyter", [route(SESSION, "10.0.1.5", 8080)], port=10211, allowed=ALLOWED),
        circuit(INFERENCE, "llama-chat", inference_routes("0b5c9e7a", 2, "10.0.2"),
                app_mode="inference", port=10212, health=HEALTH),
    ], sd=SD_ALL),
    scenario("five-inference-health-check-10-routes", five(10, HEALTH)),
    scenario("five-inference-health-check-11-routes", five(11, HEALTH)),
    scenario("five-inference-no-health-check-13-routes", five(13, None)),
    # With the setting on, an inference circuit with a health check counts 20 + routes
    # puts: four of 12 routes are 128 puts, one transaction; 12, 12, 12, 13 routes
    # are 129, so the fourth opens a second one.
    scenario("start-up-bound-128-puts", inference_set([12, 12, 12, 12], HEALTH)),
    scenario("start-up-bound-129-puts", inference_set([12, 12, 12, 13], HEALTH)),
]


# --- running Backend.AI --------------------------------------------------------------


def build_circuits(bai: Backend, inputs: dict) -> list:
    """Circuits as the coordinator holds them: made by the real Circuit.create
    (an interactive circuit with its routes; an inference circuit with none,
    its routes set later by a route update, so its session_ids stay [])."""
    w = inputs["worker"]
    worker_row = SimpleNamespace(
        id=UUID(w["id"]), authority=w["authority"], hostname=w["hostname"],
        wildcard_domain=w["wildcard_domain"], tls_listen=w["tls_listen"],
        traefik_last_used_marker_path=w["traefik_last_used_marker_path"],
    )
    created = datetime.fromisoformat(inputs["created_at"]).astimezone(UTC)
    out = []
    for c in inputs["circuits"]:
        protocol = bai.ProxyProtocol(c["protocol"])
        routes = [
            bai.RouteInfo(route_id=UUID(r["route_id"]) if r["route_id"] else None,
                          session_id=UUID(r["session_id"]), session_name=r["session_name"],
                          kernel_host=r["kernel_host"], kernel_port=r["kernel_port"], protocol=protocol)
            for r in c["routes"]
        ]
        inference = c["app_mode"] == "inference"
        circ = bai.Circuit.create(
            UUID(c["id"]), c["app"], protocol, worker_row.id, bai.AppMode(c["app_mode"]),
            bai.FrontendMode(c["frontend_mode"]), [] if inference else routes,
            port=c["port"], subdomain=c["subdomain"], envs={}, args=None, open_to_public=False,
            allowed_client_ips=c["allowed_client_ips"], user_uuid=None,
            endpoint_id=UUID(c["endpoint_id"]) if c["endpoint_id"] else None, runtime_variant=None,
        )
        if inference:
            circ.route_info = routes
        circ.created_at = circ.updated_at = created
        circ._sa_instance_state = None  # BaseMixin.dump_model drops it, as from a loaded row
        circ.worker_row = worker_row
        hc = c["health_check"]
        circ.endpoint_row = None if not inference else SimpleNamespace(
            health_check_enabled=hc is not None,
            health_check_config=None if hc is None else SimpleNamespace(
                path=hc["path"], interval=float(hc["interval"]), max_wait_time=float(hc["max_wait_time"])),
        )
        out.append(circ)
    return out


def local_config(bai: Backend, inputs: dict, sd_enabled: bool | None):
    kw = {"client_ip_strategy": inputs["client_ip_strategy"]}
    if sd_enabled is not None:
        kw["traefik_sd"] = bai.TraefikSDConfig(**dict(inputs["traefik_sd"], enabled=sd_enabled))
    return SimpleNamespace(
        proxy_coordinator=SimpleNamespace(enable_traefik=True, traefik=bai.TraefikConfig(**kw)),
        secrets=SimpleNamespace(jwt_secret=inputs["secrets"]["jwt_secret"]),
        permit_hash=SimpleNamespace(secret=inputs["secrets"]["permit_hash_secret"].encode()),
    )


ROUTER = re.compile(r"/routers/bai_router_([0-9a-f-]{36})/")


def start_up(bai: Backend, inputs: dict, sd_enabled: bool | None) -> dict:
    conf = local_config(bai, inputs, sd_enabled)
    mgr = bai.manager(conf, inputs["namespace"])
    circuits = build_circuits(bai, inputs)
    asyncio.run(mgr.initialize_traefik_circuits(circuits))
    etcd = mgr.traefik_etcd.etcd
    txn_batches = []
    for txn in etcd.txns:
        ids: list[str] = []
        for op, key, _ in txn:
            m = ROUTER.search(key)
            if op == "put" and m and m.group(1) not in ids:
                ids.append(m.group(1))
        txn_batches.append(ids)
    out = {
        "keys": dict(etcd.store),
        "txn_puts": [sum(op == "put" for op, _, _ in txn) for txn in etcd.txns],
        "txn_batches": txn_batches,
    }
    if sd_enabled is not None:
        batches = mgr._traefik_publish_batches(build_circuits(bai, inputs))
        out["batches"] = [[str(c.id) for c in batch] for batch in batches]
        assert out["batches"] == txn_batches, (out["batches"], txn_batches)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", required=True, help="Backend.AI tree at the base commit")
    ap.add_argument("--patched", required=True, help="the same tree with the traefik-sd patch applied")
    ap.add_argument("--ast-python", help="a Python 3.12+ to parse the sources with (when this one is older)")
    args = ap.parse_args()

    ast_python = find_ast_python(args.ast_python)
    base = Backend(args.source, "base", ast_python)
    patched = Backend(args.patched, "patched", ast_python)
    if base.has_traefik_sd:
        raise SystemExit(f"{args.source}: has TraefikSDConfig already; give the unpatched tree")
    if not patched.has_traefik_sd:
        raise SystemExit(f"{args.patched}: no TraefikSDConfig; apply the patch")

    scenarios = []
    for sc in SCENARIOS:
        sc = copy.deepcopy(sc)
        inputs = sc["inputs"]
        unpatched = start_up(base, inputs, None)
        off = start_up(patched, inputs, False)
        on = start_up(patched, inputs, True)
        sc.update(
            unpatched=unpatched["keys"], patched_off=off["keys"], patched_on=on["keys"],
            batches_unpatched=unpatched["txn_batches"], batches_off=off["batches"], batches_on=on["batches"],
            txn_puts_unpatched=unpatched["txn_puts"], txn_puts_off=off["txn_puts"], txn_puts_on=on["txn_puts"],
        )
        scenarios.append(sc)
        print(
            f"{sc['name']}: {len(unpatched['keys'])} keys unpatched, {len(off['keys'])} off, "
            f"{len(on['keys'])} on; off == unpatched: {off['keys'] == unpatched['keys']}; "
            f"batches off {[len(b) for b in off['batches']]} ({off['txn_puts']} puts), "
            f"on {[len(b) for b in on['batches']]} ({on['txn_puts']} puts)",
            file=sys.stderr,
        )

    doc = {
        "base_commit": BASE_COMMIT,
        "generator": "integrations/backend.ai/golden/backendai_keys.py",
        "max_txn_ops": patched.max_txn_ops,
        "backend_ai_code": {
            "unpatched": {"Circuit": base.circuit_methods, "CircuitManager": base.manager_methods},
            "patched": {"Circuit": patched.circuit_methods, "CircuitManager": patched.manager_methods},
        },
        "scenarios": scenarios,
    }
    json.dump(doc, sys.stdout, indent=2, sort_keys=True, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
