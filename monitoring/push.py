"""Push the committed dashboards to a Grafana server through its HTTP API (``onestop dashboards push``).

File provisioning (dashboards/provisioning/) is the default deployment; this is for a Grafana that is managed
elsewhere (a shared or cloud instance) where only an API token is available. The JSON pushed is the committed,
drift-checked JSON, never a regeneration, so what is reviewed is what gets deployed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monitoring.config import DEFAULT_CONFIG, MixinConfig
from monitoring.dashboards import UIDS
from monitoring.generate import REPO

__all__ = ["PushResult", "push_dashboards", "load_committed_dashboards"]


@dataclass(frozen=True)
class PushResult:
    folder_uid: str
    folder_created: bool
    dashboards: list[dict]  # Grafana's answer per dashboard (uid, url, version, status)


def load_committed_dashboards(root: Path = REPO) -> list[dict]:
    return [json.loads((root / "dashboards" / f"{name}.json").read_text(encoding="utf-8")) for name in UIDS]


def push_dashboards(url: str, token: str, *, config: MixinConfig = DEFAULT_CONFIG,
                    dashboards: Iterable[dict] | None = None, timeout: float = 30.0,
                    message: str = "onestop mixin push") -> PushResult:
    """Create the folder if missing, then create or overwrite each dashboard by uid; raises on any API error."""
    from grafana_client import GrafanaApi
    from grafana_client.client import GrafanaClientError, TokenAuth

    api = GrafanaApi.from_url(url, credential=TokenAuth(token), timeout=timeout)
    folder_uid = config.dashboard_folder_uid
    created = False
    try:
        api.folder.get_folder(folder_uid)
    except GrafanaClientError as exc:
        if getattr(exc, "status_code", None) != 404:
            raise
        api.folder.create_folder(config.dashboard_folder, uid=folder_uid)
        created = True
    results = []
    for board in (dashboards if dashboards is not None else load_committed_dashboards()):
        payload: dict[str, Any] = {"dashboard": {**board, "id": None}, "folderUid": folder_uid, "overwrite": True,
                                   "message": message}
        results.append(api.dashboard.update_dashboard(payload))
    return PushResult(folder_uid=folder_uid, folder_created=created, dashboards=results)
