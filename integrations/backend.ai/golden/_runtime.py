"""Run the parts of Backend.AI's AppProxy coordinator that write Traefik's etcd
keys, from a Backend.AI source tree, outside Backend.AI.

Backend.AI's Python dependencies (SQLAlchemy, etcd-client-py, aiohttp, ...)
are not needed: every class, method, function and constant that decides a key
or a value is cut verbatim out of the tree (``_extract.py``) and executed, each
in a module namespace of its own file, with that file's own imports replayed
(those that exist here) and its ``from __future__ import annotations`` honoured.
What is substituted is only what the extracted code does not compute anything
with:

- ``ai.backend.common.types.BackendAISchema``: ``pydantic.BaseModel`` (the real
  one only maps validation errors to Backend.AI's exceptions);
- the config metadata (``BackendAIConfigMeta``, ``ConfigExample``,
  ``CompositeType``) and ``EtcdConfig``, which ``TraefikConfig`` only mentions;
- exception classes, ``log``, ``HostPortPair`` (never an instance here);
- the ORM: ``Circuit`` is a plain class holding the real ``Circuit`` methods
  (``create``, ``traefik_rule``, ``traefik_entrypoint``, ``traefik_routers`` or
  ``get_traefik_routers``, ``traefik_services``, ``get_traefik_middlewares``,
  ...) and the real ``BaseMixin.dump_model``; its ``worker_row`` and
  ``endpoint_row`` are stubs with the attributes those methods read;
- etcd: ``TraefikEtcd`` is assembled from the real ``TraefikEtcd._mangle_key``
  and the real ``AsyncEtcd._merge_scope_prefix_map`` /
  ``atomic_replace_prefixes``, over an in-memory etcd (``get_prefix``, ``txn``)
  that records each transaction;
- on Python 3.11, ``typing.override`` and ``itertools.batched`` (3.12) are
  polyfilled inside the namespaces that use them.

``CircuitManager`` is likewise a plain class holding the real
``initialize_traefik_circuits`` (and, in a patched tree,
``_traefik_publish_batches``), with ``local_config`` a stub holding the real
``TraefikConfig`` and the secrets.
"""

from __future__ import annotations

import __future__ as _future
import enum
import glob
import importlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import textwrap
import types
from contextlib import asynccontextmanager
from typing import Any

import pydantic

HERE = os.path.dirname(os.path.abspath(__file__))


# --- finding the tree and a parser ------------------------------------------------


def backend_root(tree: str) -> str:
    """The ``ai/backend`` directory of a checkout, an extracted archive or itself."""
    for cand in (
        os.path.join(tree, "src", "ai", "backend"),
        os.path.join(tree, "ai", "backend"),
        tree,
    ):
        if os.path.isfile(os.path.join(cand, "appproxy", "coordinator", "models", "circuit.py")):
            return cand
    raise SystemExit(f"{tree}: no src/ai/backend/appproxy/coordinator/models/circuit.py in it")


def find_ast_python(explicit: str | None) -> str | None:
    """A Python 3.12+ to parse the sources with, when this one is older."""
    if sys.version_info >= (3, 12):
        return None
    candidates = [explicit, os.environ.get("BAI_GOLDEN_AST_PYTHON")]
    candidates += [shutil.which(f"python3.{m}") for m in range(20, 11, -1)]
    pyenv = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates += sorted(glob.glob(os.path.join(pyenv, "versions", "3.1[2-9]*", "bin", "python3")), reverse=True)
    for cand in candidates:
        if not cand:
            continue
        try:
            out = subprocess.run(
                [cand, "-c", "import sys; print(sys.version_info >= (3, 12))"],
                capture_output=True, text=True, check=True,
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            continue
        if out == "True":
            return cand
    raise SystemExit(
        "Backend.AI's sources need Python 3.12+ to parse: pass --ast-python or set BAI_GOLDEN_AST_PYTHON"
    )


def run_extract(requests: list[dict], ast_python: str | None) -> list[dict]:
    if ast_python is None:
        sys.path.insert(0, HERE)
        import _extract

        return _extract.extract(requests)
    proc = subprocess.run(
        [ast_python, os.path.join(HERE, "_extract.py")],
        input=json.dumps(requests), capture_output=True, text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    return json.loads(proc.stdout)


# --- substitutes ----------------------------------------------------------------


def _batched(iterable, n):
    # itertools.batched of Python 3.12, as documented.
    if n < 1:
        raise ValueError("n must be at least one")
    it = iter(iterable)
    while batch := tuple(itertools.islice(it, n)):
        yield batch


def _itertools_module():
    if hasattr(itertools, "batched"):
        return itertools
    mod = types.ModuleType("itertools")
    mod.__dict__.update(itertools.__dict__)
    mod.batched = _batched
    return mod


def _override(f):
    return f


class _Log:
    def debug(self, *args, **kwargs):
        pass

    info = warning = debug

    # ClientIPValidator logs an invalid allowlist entry, and skips it.
    exception = error = debug


class _Meta:
    """BackendAIConfigMeta / ConfigExample: documentation only."""

    def __init__(self, *args, **kwargs):
        pass


class _CompositeType(enum.Enum):
    FIELD = "field"


class _EtcdConfig(pydantic.BaseModel):
    namespace: str = "local"


class _BackendAISchema(pydantic.BaseModel):
    pass


class _Placeholder:
    """A type only named in annotations (ServerConfig, RuntimeVariant, ...)."""


class _Never:
    """HostPortPair: ensure_json_serializable meets none here."""


def _exc(name: str) -> type:
    return type(name, (Exception,), {})


# --- in-memory etcd for the real atomic_replace_prefixes ----------------------------


class _TxnOp:
    @staticmethod
    def put(key: bytes, value: bytes):
        return ("put", bytes(key).decode(), bytes(value).decode())

    @staticmethod
    def delete(key: bytes):
        return ("delete", bytes(key).decode(), None)


class _Txn:
    def __init__(self):
        self.success: list = []
        self.failure: list = []

    def and_then(self, ops):
        self.success = list(ops)
        return self

    def or_else(self, ops):
        self.failure = list(ops)
        return self


class _Communicator:
    def __init__(self, etcd: MemoryEtcd):
        self.etcd = etcd

    async def get_prefix(self, prefix: bytes):
        p = bytes(prefix).decode()
        return [(k.encode(), v.encode()) for k, v in sorted(self.etcd.store.items()) if k.startswith(p)]

    async def txn(self, txn: _Txn):
        self.etcd.txns.append(txn.success)
        for op, key, value in txn.success:
            if op == "put":
                self.etcd.store[key] = value
            else:
                self.etcd.store.pop(key, None)


class MemoryEtcd:
    def __init__(self):
        self.store: dict[str, str] = {}
        self.txns: list[list[tuple]] = []

    @asynccontextmanager
    async def connect(self):
        yield _Communicator(self)


# --- loading a tree -----------------------------------------------------------------

_CIRCUIT_METHODS = [
    "create", "_ip_validator", "traefik_rule", "traefik_entrypoint", "traefik_routers",
    "_traefik_sd_config", "get_traefik_routers", "traefik_services", "get_traefik_middlewares",
    "_get_traefik_sd_plugin_config",
]

_REQUESTS = [
    {"path": "appproxy/common/defs.py", "top": ["PERMIT_COOKIE_NAME"]},
    {"path": "appproxy/common/client_ip.py", "top": ["ClientIPValidator"]},
    {"path": "appproxy/common/types.py",
     "top": ["FrontendMode", "ProxyProtocol", "AppMode", "RouteInfo", "SerializableCircuit"]},
    {"path": "appproxy/common/utils.py", "top": ["ensure_json_serializable"]},
    {"path": "appproxy/common/config.py", "top": ["BaseSchema"]},
    {"path": "appproxy/coordinator/config.py",
     "top": ["ClientIPStrategyConfig", "TraefikSDConfig", "TraefikConfig"]},
    {"path": "appproxy/coordinator/models/base.py", "methods": {"BaseMixin": ["dump_model"]}},
    {"path": "appproxy/coordinator/models/circuit.py", "methods": {"Circuit": _CIRCUIT_METHODS}},
    {"path": "common/etcd.py", "top": ["ConfigScopes", "quote", "_slash", "_flatten_nested_dict"],
     "methods": {"AsyncEtcd": ["_merge_scope_prefix_map", "atomic_replace_prefixes"]}},
    {"path": "appproxy/common/etcd.py", "top": ["convert_to_etcd_dict"],
     "methods": {"TraefikEtcd": ["_mangle_key"]}},
    {"path": "appproxy/coordinator/types.py", "top": ["_ETCD_MAX_TXN_OPS", "_count_etcd_keys"],
     "methods": {"CircuitManager": ["initialize_traefik_circuits", "_traefik_publish_batches"]}},
]


class _Module:
    def __init__(self, tag: str, info: dict, root: str):
        self.info = info
        self.rel = os.path.relpath(info["path"], root)
        name = "_bai_golden_" + tag + "_" + self.rel.removesuffix(".py").replace("/", "_")
        self.module = types.ModuleType(name)
        self.module.__file__ = info["path"]
        sys.modules[name] = self.module
        self.ns = self.module.__dict__
        self._replay_imports()
        self.ns.setdefault("log", _Log())

    def _replay_imports(self):
        for module, name, asname, level in self.info["imports"]:
            target = module if module is not None else name
            if level or target == "ai" or target.startswith("ai."):
                continue  # Backend.AI's own names are provided by the loader
            try:
                if module is None:
                    mod = importlib.import_module(name)
                    if asname:
                        self.ns[asname] = mod
                    else:
                        self.ns[name.split(".")[0]] = importlib.import_module(name.split(".")[0])
                else:
                    self.ns[asname or name] = getattr(importlib.import_module(module), name)
            except (ImportError, AttributeError):
                pass  # not installed here: nothing extracted may need it
        if "itertools" in self.ns:
            self.ns["itertools"] = _itertools_module()
        if "override" not in self.ns:
            self.ns["override"] = _override

    def provide(self, **names):
        self.ns.update(names)

    def run(self, src: str):
        flags = _future.annotations.compiler_flag if self.info["future_annotations"] else 0
        exec(compile(src, self.info["path"], "exec", flags=flags, dont_inherit=True), self.ns)

    def top(self, *names: str, required: bool = True):
        for n in names:
            if n in self.info["top"]:
                self.run(self.info["top"][n])
            elif required:
                raise SystemExit(f"{self.info['path']}: {n} not found")
        return [self.ns.get(n) for n in names]

    def klass(self, cls: str, name: str, bases: str = "", required: tuple[str, ...] = ()):
        methods = self.info["methods"].get(cls, {})
        for r in required:
            if r not in methods:
                raise SystemExit(f"{self.info['path']}: {cls}.{r} not found")
        body = "\n".join(textwrap.indent(m, "    ") for m in methods.values()) or "    pass"
        self.run(f"class {name}{'(' + bases + ')' if bases else ''}:\n{body}\n")
        return self.ns[name], sorted(methods)


class Backend:
    """One tree's coordinator, loaded."""

    def __init__(self, tree: str, tag: str, ast_python: str | None):
        root = backend_root(tree)
        self.root = root
        reqs = [dict(r, path=os.path.join(root, r["path"])) for r in _REQUESTS]
        infos = run_extract(reqs, ast_python)
        m = {os.path.relpath(i["path"], root): _Module(tag, i, root) for i in infos}

        (self.PERMIT_COOKIE_NAME,) = m["appproxy/common/defs.py"].top("PERMIT_COOKIE_NAME")

        ip = m["appproxy/common/client_ip.py"]
        # ``type IPNetwork = IPv4Network | IPv6Network`` (3.12 syntax) as a plain alias.
        ip.provide(IPNetwork=ip.ns["ipaddress"].IPv4Network | ip.ns["ipaddress"].IPv6Network)
        (ClientIPValidator,) = ip.top("ClientIPValidator")

        ty = m["appproxy/common/types.py"]
        ty.provide(ClientIPValidator=ClientIPValidator, BackendAISchema=_BackendAISchema,
                   ModelServiceStatus=_Placeholder, RuntimeVariant=_Placeholder)
        (self.FrontendMode, self.ProxyProtocol, self.AppMode, self.RouteInfo,
         self.SerializableCircuit) = ty.top("FrontendMode", "ProxyProtocol", "AppMode", "RouteInfo",
                                             "SerializableCircuit")

        ut = m["appproxy/common/utils.py"]
        ut.provide(HostPortPair=_Never)
        (ensure_json_serializable,) = ut.top("ensure_json_serializable")

        cc = m["appproxy/common/config.py"]
        cc.provide(BackendAISchema=_BackendAISchema)
        (BaseSchema,) = cc.top("BaseSchema")

        cf = m["appproxy/coordinator/config.py"]
        cf.provide(BaseSchema=BaseSchema, BackendAIConfigMeta=_Meta, ConfigExample=_Meta,
                   CompositeType=_CompositeType, EtcdConfig=_EtcdConfig,
                   ConfigValidationError=_exc("ConfigValidationError"), NEXT_RELEASE_VERSION="next")
        (self.ClientIPStrategyConfig,) = cf.top("ClientIPStrategyConfig")
        (self.TraefikSDConfig,) = cf.top("TraefikSDConfig", required=False)
        (self.TraefikConfig,) = cf.top("TraefikConfig")
        self.has_traefik_sd = self.TraefikSDConfig is not None

        base = m["appproxy/coordinator/models/base.py"]
        base.provide(ensure_json_serializable=ensure_json_serializable)
        BaseMixin, _ = base.klass("BaseMixin", "BaseMixin", required=("dump_model",))

        ci = m["appproxy/coordinator/models/circuit.py"]
        ci.provide(ClientIPValidator=ClientIPValidator, PERMIT_COOKIE_NAME=self.PERMIT_COOKIE_NAME,
                   AppMode=self.AppMode, FrontendMode=self.FrontendMode, ProxyProtocol=self.ProxyProtocol,
                   RouteInfo=self.RouteInfo, SerializableCircuit=self.SerializableCircuit,
                   ServerConfig=_Placeholder, TraefikSDConfig=self.TraefikSDConfig or _Placeholder,
                   RuntimeVariant=_Placeholder, BaseMixin=BaseMixin,
                   InvalidCircuitConfigError=_exc("InvalidCircuitConfigError"),
                   MissingTraefikConfigError=_exc("MissingTraefikConfigError"),
                   ObjectNotFound=_exc("ObjectNotFound"), UnsupportedProtocol=_exc("UnsupportedProtocol"))
        common = ("create", "_ip_validator", "traefik_rule", "traefik_entrypoint", "traefik_services",
                  "get_traefik_middlewares")
        sd = ("_traefik_sd_config", "get_traefik_routers", "_get_traefik_sd_plugin_config")
        self.Circuit, self.circuit_methods = ci.klass(
            "Circuit", "Circuit", bases="BaseMixin",
            required=common + (sd if self.has_traefik_sd else ("traefik_routers",)),
        )

        ed = m["common/etcd.py"]
        ed.provide(TxnOp=_TxnOp, EtcdTransactionAction=_Txn)
        (self.ConfigScopes, _, _, self._flatten_nested_dict) = ed.top(
            "ConfigScopes", "quote", "_slash", "_flatten_nested_dict")
        AsyncEtcd, _ = ed.klass("AsyncEtcd", "AsyncEtcd",
                                required=("_merge_scope_prefix_map", "atomic_replace_prefixes"))

        ae = m["appproxy/common/etcd.py"]
        ae.provide(AsyncEtcd=AsyncEtcd)
        (self.convert_to_etcd_dict,) = ae.top("convert_to_etcd_dict")
        TraefikEtcd, _ = ae.klass("TraefikEtcd", "TraefikEtcd", bases="AsyncEtcd", required=("_mangle_key",))
        scopes = self.ConfigScopes

        class GoldenTraefikEtcd(TraefikEtcd):
            # What TraefikEtcd(addr, namespace, {ConfigScopes.GLOBAL: ""}) sets up
            # (coordinator/server.py), over MemoryEtcd.
            def __init__(self, namespace: str):
                self.ns = namespace
                self.encoding = "utf-8"
                self.scope_prefix_map = {scopes.GLOBAL: ""}
                self.etcd = MemoryEtcd()

        self.TraefikEtcd = GoldenTraefikEtcd

        tp = m["appproxy/coordinator/types.py"]
        tp.provide(convert_to_etcd_dict=self.convert_to_etcd_dict, Circuit=self.Circuit,
                   ServerMisconfiguredError=_exc("ServerMisconfiguredError"))
        tp.top("_ETCD_MAX_TXN_OPS", "_count_etcd_keys", required=self.has_traefik_sd)
        self.CircuitManager, self.manager_methods = tp.klass(
            "CircuitManager", "CircuitManager",
            required=("initialize_traefik_circuits",)
            + (("_traefik_publish_batches",) if self.has_traefik_sd else ()),
        )
        self.max_txn_ops = tp.ns.get("_ETCD_MAX_TXN_OPS")

    def manager(self, local_config: Any, namespace: str):
        mgr = self.CircuitManager()
        mgr.local_config = local_config
        mgr.traefik_etcd = self.TraefikEtcd(namespace)
        return mgr
