"""JupyterHub for a Pollen project's researchers (docs/deployment.md, "JupyterHub").

Researchers sign in with Keycloak (the realm of deploy/keycloak/realm.json, its client
`jupyterhub`); only members of the realm's Pollen groups get in, project admins are the hub's
admins. Each researcher gets a container of the single-user image
(deploy/docker/Dockerfile.jupyter-singleuser) with no privilege, no capability, CPU and memory
limits and a persistent workspace volume of their own.

Runs start under the researcher's own identity: in the notebook's terminal they sign in once
with `pollen login` (the device flow of the realm's `pollen-cli` client; their Keycloak session
makes it one click), and the tokens live in their workspace (~/.pollen/logins), refreshed by
`pollen` itself. The hub keeps no token of theirs (no auth_state).

Settings come from the environment (defaults: the sample project); the client secret from the
file `jupyterhub_client_secret` in $CREDENTIALS_DIRECTORY (systemd's LoadCredential=) or
/run/secrets (a compose secret).
"""

import os
from pathlib import Path

c = get_config()  # noqa: F821 -- defined by JupyterHub when it loads this file


def setting(name: str, default: str) -> str:
    return os.environ.get(name, default)


def secret(name: str) -> str:
    folder = os.environ.get("CREDENTIALS_DIRECTORY", "/run/secrets")
    return Path(folder, name).read_text().strip()


KEYCLOAK = setting("HUB_KEYCLOAK_URL", "https://id.example.org")
REALM = setting("HUB_KEYCLOAK_REALM", "pollen")
HUB_URL = setting("HUB_PUBLIC_URL", "https://jupyter.example.org")
OIDC = f"{KEYCLOAK}/realms/{REALM}/protocol/openid-connect"

# --- Sign-in: OpenID Connect against Keycloak (OAuthenticator 17) ---------------------------
c.JupyterHub.authenticator_class = "oauthenticator.generic.GenericOAuthenticator"
c.GenericOAuthenticator.client_id = "jupyterhub"
c.GenericOAuthenticator.client_secret = secret("jupyterhub_client_secret")
c.GenericOAuthenticator.oauth_callback_url = f"{HUB_URL}/hub/oauth_callback"
c.GenericOAuthenticator.authorize_url = f"{OIDC}/auth"
c.GenericOAuthenticator.token_url = f"{OIDC}/token"
c.GenericOAuthenticator.userdata_url = f"{OIDC}/userinfo"
c.GenericOAuthenticator.logout_redirect_url = f"{OIDC}/logout"
c.GenericOAuthenticator.scope = ["openid", "profile", "email"]
c.GenericOAuthenticator.username_claim = "preferred_username"
c.GenericOAuthenticator.login_service = "Pollen (Keycloak)"
# Who may sign in: the realm's groups (Group Membership mapper, full paths), nobody else.
c.GenericOAuthenticator.manage_groups = True
c.GenericOAuthenticator.auth_state_groups_key = "oauth_user.groups"
c.GenericOAuthenticator.allowed_groups = {
    "/pollen/project-admins",
    "/pollen/org-admins",
    "/pollen/leads",
    "/pollen/members",
}
c.GenericOAuthenticator.admin_groups = {"/pollen/project-admins"}
c.GenericOAuthenticator.allow_all = False
# The researcher's tokens stay with Keycloak and `pollen`, not in the hub's database.
c.GenericOAuthenticator.enable_auth_state = False

# --- Notebooks: one restricted container per researcher (DockerSpawner 13) -----------------
c.JupyterHub.spawner_class = "dockerspawner.DockerSpawner"
c.DockerSpawner.image = setting(
    "HUB_NOTEBOOK_IMAGE", "myorg/pollen-jupyter-singleuser:0.1.0"
)
c.DockerSpawner.allowed_images = []  # researchers cannot pick another image
# The compose network the SuperLink is on (deploy/compose), so notebooks reach superlink:9093.
c.DockerSpawner.network_name = setting("HUB_DOCKER_NETWORK", "pollen_default")
c.DockerSpawner.use_internal_ip = True
c.DockerSpawner.remove = True
c.DockerSpawner.notebook_dir = "/home/researcher"
# The workspace: a volume per researcher, kept across sessions (notebooks, ~/.pollen).
c.DockerSpawner.volumes = {"pollen-jupyter-{username}": "/home/researcher"}
c.DockerSpawner.cpu_limit = float(setting("HUB_NOTEBOOK_CPUS", "2"))
c.DockerSpawner.mem_limit = setting("HUB_NOTEBOOK_MEMORY", "4G")
c.DockerSpawner.extra_host_config = {
    "privileged": False,
    "cap_drop": ["ALL"],
    "security_opt": ["no-new-privileges:true"],
    "read_only": True,
    "tmpfs": {"/tmp": "rw,nosuid,nodev,size=1g"},
    "pids_limit": 512,
}
c.DockerSpawner.environment = {
    # `pollen run`, `pollen list`, … use the connection `pollen login lab` makes.
    "POLLEN_SUPERLINK": "lab",
    "PROJECT_SUPERLINK_ADDRESS": setting(
        "HUB_SUPERLINK_ADDRESS", "superlink.example.org:9093"
    ),
    "PROJECT_ROOT_FINGERPRINT": setting("HUB_ROOT_FINGERPRINT", ""),
}

# --- The hub itself ------------------------------------------------------------------------
c.JupyterHub.bind_url = "http://0.0.0.0:8000"  # TLS ends at the reverse proxy in front
c.JupyterHub.hub_ip = "0.0.0.0"  # single-user containers call the hub's API
c.JupyterHub.hub_connect_ip = setting("HUB_CONNECT_IP", "jupyterhub")
c.JupyterHub.cookie_secret_file = "/srv/jupyterhub/jupyterhub_cookie_secret"
c.JupyterHub.db_url = "sqlite:////srv/jupyterhub/jupyterhub.sqlite"
c.Spawner.http_timeout = 120
