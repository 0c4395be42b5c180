"""The scope each `lakecdp` command needs, in one table a reviewer can audit.

Keyed by the command's words (`"privacy erase"`); the CLI checks the caller's token against it
before the handler runs, and tests/unit/test_roles.py walks the parser so a command missing here
fails the build instead of running unchecked.
"""

from __future__ import annotations

from lakecdp.privacy.roles import Access, Credential, Scope

PUBLIC, READ, RUN = Credential.PUBLIC, Scope.LAKE_READ, Scope.PIPELINE_RUN

COMMAND_SCOPES: dict[str, Access] = {
    "demo": RUN,
    "generate": PUBLIC,  # synthetic data into a folder: no lake, no customer
    "sql": READ,  # contact columns need pii:read on top (null without it)
    "segments validate": PUBLIC,
    "segments preview": READ,
    "segments explain": READ,
    "segments audit": READ,
    "segments tick": RUN,
    "stream run": RUN,
    "reconcile": RUN,
    "triggers dispatch": Scope.EXPORT_RUN,
    "triggers status": READ,
    "identity show": READ,
    "identity unmerge": RUN,
    "privacy erase": Scope.PRIVACY_ADMIN,
    "privacy process-erasures": Scope.PRIVACY_ADMIN,
    "privacy access": Scope.PRIVACY_ADMIN,
    "privacy consent": Scope.PRIVACY_ADMIN,
    "privacy access-requests": Scope.PRIVACY_ADMIN,
    "privacy admin-token": PUBLIC,  # a digest grants nothing until an admin configures it
    "collect serve": RUN,
    "collect revoke": Scope.COLLECTOR_ADMIN,
    "collect restore": Scope.COLLECTOR_ADMIN,
    "collect revoked": READ,
    "collect link": Scope.EXPORT_RUN,  # signed links go into the emails sent
    "preferences link": Scope.EXPORT_RUN,  # a preference-centre link goes into the emails sent
    "import customers": RUN,
    "import orders": RUN,
    "import loyalty": RUN,
    "import support": RUN,
    "enrich import": RUN,
    "profile show": READ,
    "export plan": READ,
    "export run": Scope.EXPORT_RUN,
    "export status": READ,
    "export sync-unsubscribes": Scope.EXPORT_RUN,
    "quality run": RUN,
    "quality checkpoint": RUN,
    "quality list": READ,
    "train": Scope.MODELS_TRAIN,
    "score": Scope.MODELS_TRAIN,
    "models list": READ,
    "models show": READ,
    "models promote": Scope.MODELS_TRAIN,
    "content validate": PUBLIC,
    "content preview": Scope.CONTENT_READ,
    "content render": Scope.CONTENT_READ,
    "content audit": PUBLIC,
    "serve": RUN,  # starting the content API; its callers need content:read
    "recs build": RUN,
    "recs evaluate": READ,
    "experiments list": READ,
    "experiments assign": Scope.EXPERIMENTS_RUN,
    "experiments materialize": Scope.EXPERIMENTS_RUN,
    "experiments holdout draw": Scope.EXPERIMENTS_RUN,
    "experiments plan": READ,
    "experiments report": READ,
    "status": READ,
    "report": READ,
    "access new-token": PUBLIC,
    "access roles": PUBLIC,
    "access whoami": PUBLIC,
}
