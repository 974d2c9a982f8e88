"""models/ is the pure domain core: it must not import the runtime (Faust, Kafka, Prometheus) nor streams/."""

import ast
from pathlib import Path

FORBIDDEN = ("faust", "kafka", "aiokafka", "prometheus_client", "streams", "mode", "aiohttp")


def test_models_import_nothing_from_the_runtime():
    offenders = []
    for path in sorted(Path(__file__).resolve().parent.parent.joinpath("models").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for n in names:
                if n.split(".")[0] in FORBIDDEN:
                    offenders.append(f"{path.name}:{node.lineno} imports {n}")
    assert offenders == []
