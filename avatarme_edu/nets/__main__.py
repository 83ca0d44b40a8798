"""``python -m avatarme_edu.nets NET --out DIR ...``: the same as ``avatarme-edu train NET ...``."""

from avatarme_edu.nets.train import main

raise SystemExit(main())
