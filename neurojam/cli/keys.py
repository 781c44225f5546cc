"""`neurojam keys init`: a CurveZMQ keypair for this node, and the line to paste on the other side."""

from __future__ import annotations

import argparse
from pathlib import Path

from neurojam.cli.args import config_args, load_config_from


def cmd_keys_init(args: argparse.Namespace) -> int:
    from bridge.security import create_keys, keys_dir, public_key_text

    config = load_config_from(args)
    directory = Path(args.dir).expanduser() if args.dir else keys_dir(config.bridge)
    node = args.node or config.rig.node_id
    secret = directory / f"{node}.key_secret"
    if secret.exists() and not args.force:
        public = directory / f"{node}.key"
        print(f"keys: {secret} already exists (keeping it; --force makes a new pair)")
    else:
        public, secret = create_keys(directory, node)
        print(f"keys: wrote {public} and {secret} (secret: mode 0600, never copy it off this machine)")
    key = public_key_text(public)
    print(f"public key of {node}: '{key}'  (quoted: Z85 has characters a shell reads)")
    if node == config.brain.node_id:
        print(f"on each rig and tool, set:   bridge.brain_public_key: '{key}'")
    else:
        role = "tool" if node.startswith(("tool", "stage")) else f"rig:{node}"
        print(f"on the brain, add to:        bridge.allowed_keys: [..., '{key}']")
        print(f"and say what it may do:      bridge.identities: {{'{key}': '{role}'}}  (rig:NAME plays as NAME and "
              f"controls nothing; tool controls every rig, tool:A,B only those)")
    return 0


def register(sub, add) -> None:
    keys = sub.add_parser("keys", help="CurveZMQ keys for the wire").add_subparsers(dest="sub", metavar="ACTION")
    p = add("init", cmd_keys_init, "make this node's keypair (NODE.key public, NODE.key_secret mode 0600) and print "
            "the public key to paste into the other side's config", keys)
    p.add_argument("--node", help="the node's name: the rig's node_id (default), 'brain', or 'tool' for steer/doctor")
    p.add_argument("--dir", help="where to write the keys (default: bridge.keys_dir)")
    p.add_argument("--force", action="store_true", help="replace an existing keypair")
    config_args(p)
