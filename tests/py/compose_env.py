"""Print a Compose file's services as JSON, the way Compose would see them with no variables set.

Usage: compose_env.py COMPOSE_FILE

Parses with yaml.safe_load (which also resolves `&anchor`/`*alias` and `<<:` merges), then for
every string value substitutes `${VAR:-default}` / `${VAR-default}` with the default, `${VAR:+x}`
/ `${VAR+x}` with "" and `$$` with `$` (the variable is taken as unset, so the file's own defaults
are what gets validated). `$VAR` / `${VAR}` without a default and `${VAR:?msg}` are errors: the
file must run without an .env file. Exit 0 with JSON on stdout, or 1 with the problem on stderr.

Output: {"file": ABS_PATH, "volumes": [NAME...], "services": {NAME: {
    "image": str|null,
    "build": null | {"context": str, "dockerfile": str, "dockerfile_path": ABS_PATH},
    "command": [ARG...]|null, "command_form": "list"|"string"|null,
    "entrypoint": [ARG...]|null,
    "environment": {KEY: str|null},   # null: a bare `KEY` (passed through from the host)
    "env_file": [str...],
    "ports": [{"host_ip": str|null, "published": str|null, "target": int}],
    "expose": [int...],
    "depends_on": {NAME: CONDITION},
    "healthcheck": bool,
    "volumes": [{"source": str|null, "target": str, "read_only": bool}],
}}}
"""

import json
import os
import re
import shlex
import sys

import yaml


class ComposeError(Exception):
    pass


_VAR = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<invalid>))"
)


def interpolate(value, where):
    def sub(m):
        if m.group("escaped"):
            return "$"
        if m.group("named"):
            raise ComposeError(f"{where}: ${m.group('named')} has no default; write ${{{m.group('named')}:-default}}")
        if m.group("invalid") is not None:
            raise ComposeError(f"{where}: invalid interpolation in {value!r}")
        name, op, arg = m.group("braced"), m.group("op"), m.group("arg")
        if op is None:
            raise ComposeError(f"{where}: ${{{name}}} has no default; write ${{{name}:-default}}")
        if "$" in arg:
            raise ComposeError(f"{where}: nested interpolation in {value!r} is not supported here")
        if op in (":-", "-"):
            return arg
        if op in (":+", "+"):
            return ""
        raise ComposeError(f"{where}: ${{{name}{op}{arg}}} requires {name} to be set")

    return _VAR.sub(sub, value)


def resolve(node, where):
    """Interpolates every string value (never keys), as Compose does."""
    if isinstance(node, str):
        return interpolate(node, where)
    if isinstance(node, list):
        return [resolve(v, f"{where}[{i}]") for i, v in enumerate(node)]
    if isinstance(node, dict):
        return {k: resolve(v, f"{where}.{k}") for k, v in node.items()}
    return node


def scalar(value, where):
    """An environment value as Compose passes it: strings as is, numbers and booleans as text."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    raise ComposeError(f"{where}: {value!r} is not a string, number or boolean")


def environment(raw, where):
    if raw is None:
        return {}
    out = {}
    if isinstance(raw, dict):
        for key, value in raw.items():
            out[str(key)] = scalar(value, f"{where}.{key}")
    elif isinstance(raw, list):
        for i, item in enumerate(raw):
            if not isinstance(item, str):
                raise ComposeError(f"{where}[{i}]: {item!r} is not KEY=value")
            key, sep, value = item.partition("=")
            if key in out:
                raise ComposeError(f"{where}: {key} is set twice")
            out[key] = value if sep else None
    else:
        raise ComposeError(f"{where}: must be a map or a list of KEY=value")
    return out


def argv(raw, where):
    if raw is None:
        return None, None
    if isinstance(raw, str):
        return shlex.split(raw), "string"
    if isinstance(raw, list):
        return [scalar(a, f"{where}[{i}]") for i, a in enumerate(raw)], "list"
    raise ComposeError(f"{where}: must be a string or a list")


def build(raw, base, where):
    if raw is None:
        return None
    if isinstance(raw, str):
        raw = {"context": raw}
    if not isinstance(raw, dict):
        raise ComposeError(f"{where}: must be a path or a map")
    context = raw.get("context", ".")
    dockerfile = raw.get("dockerfile", "Dockerfile")
    path = os.path.normpath(os.path.join(base, context, dockerfile))
    return {"context": context, "dockerfile": dockerfile, "dockerfile_path": path}


def port(raw, where):
    if isinstance(raw, dict):
        published = raw.get("published")
        return {"host_ip": raw.get("host_ip"), "published": None if published is None else str(published), "target": int(raw["target"])}
    spec = str(raw).split("/")[0]
    parts = spec.rsplit(":", 2)
    try:
        if len(parts) == 3:
            return {"host_ip": parts[0] or None, "published": parts[1] or None, "target": int(parts[2])}
        if len(parts) == 2:
            return {"host_ip": None, "published": parts[0] or None, "target": int(parts[1])}
        return {"host_ip": None, "published": None, "target": int(parts[0])}
    except ValueError as e:
        raise ComposeError(f"{where}: cannot read port {raw!r} (ranges are not supported here)") from e


def volume(raw, where):
    if isinstance(raw, dict):
        return {"source": raw.get("source"), "target": raw["target"], "read_only": bool(raw.get("read_only", False))}
    parts = str(raw).split(":")
    if len(parts) == 1:
        return {"source": None, "target": parts[0], "read_only": False}
    if len(parts) in (2, 3):
        modes = parts[2].split(",") if len(parts) == 3 else []
        return {"source": parts[0], "target": parts[1], "read_only": "ro" in modes}
    raise ComposeError(f"{where}: cannot read volume {raw!r}")


def depends_on(raw, where):
    if raw is None:
        return {}
    if isinstance(raw, list):
        return {name: "service_started" for name in raw}
    if isinstance(raw, dict):
        return {name: (spec or {}).get("condition", "service_started") for name, spec in raw.items()}
    raise ComposeError(f"{where}: must be a list or a map")


def service(name, raw, base):
    where = f"services.{name}"
    if not isinstance(raw, dict):
        raise ComposeError(f"{where}: must be a map")
    for unsupported in ("extends",):
        if unsupported in raw:
            raise ComposeError(f"{where}.{unsupported} is not supported by this checker")
    command, command_form = argv(raw.get("command"), f"{where}.command")
    entrypoint, _ = argv(raw.get("entrypoint"), f"{where}.entrypoint")
    env_file = raw.get("env_file") or []
    healthcheck = raw.get("healthcheck")
    return {
        "image": raw.get("image"),
        "build": build(raw.get("build"), base, f"{where}.build"),
        "command": command,
        "command_form": command_form,
        "entrypoint": entrypoint,
        "environment": environment(raw.get("environment"), f"{where}.environment"),
        "env_file": [env_file] if isinstance(env_file, (str, dict)) else env_file,
        "ports": [port(p, f"{where}.ports[{i}]") for i, p in enumerate(raw.get("ports") or [])],
        "expose": [int(str(p).split("/")[0]) for p in raw.get("expose") or []],
        "depends_on": depends_on(raw.get("depends_on"), f"{where}.depends_on"),
        "healthcheck": bool(healthcheck) and not healthcheck.get("disable", False),
        "volumes": [volume(v, f"{where}.volumes[{i}]") for i, v in enumerate(raw.get("volumes") or [])],
    }


def load(path):
    with open(path, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    if not isinstance(doc, dict) or not isinstance(doc.get("services"), dict):
        raise ComposeError(f"{path}: no `services:` map")
    if "include" in doc:
        raise ComposeError(f"{path}: `include` is not supported by this checker")
    base = os.path.dirname(os.path.abspath(path))
    services = {}
    for name, raw in doc["services"].items():
        services[name] = service(name, resolve(raw, f"services.{name}"), base)
    return {"file": os.path.abspath(path), "volumes": sorted((doc.get("volumes") or {}).keys()), "services": services}


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    try:
        out = load(sys.argv[1])
    except (ComposeError, yaml.YAMLError, OSError) as e:
        print(f"compose_env.py: {e}", file=sys.stderr)
        sys.exit(1)
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    print()


if __name__ == "__main__":
    main()
