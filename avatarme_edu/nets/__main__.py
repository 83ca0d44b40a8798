"""``python -m avatarme_edu.nets NET --out DIR ...``: the same as ``avatarme-edu train NET ...``."""

from avatarme_edu.nets.train_command import main

raise SystemExit(main())
