"""``python -m avatarme_edu.lightstage.dataset --sample``: rewrite avatarme_edu/data/subject_0000.

Datasets themselves are written with ``avatarme-edu dataset N --out DIR`` (:mod:`avatarme_edu.cli`).
"""

import sys

from avatarme_edu.lightstage.dataset.write import write_sample_subject

USAGE = "usage: python -m avatarme_edu.lightstage.dataset --sample   (datasets: avatarme-edu dataset N --out DIR)"

if __name__ == "__main__":
    if sys.argv[1:] in (["-h"], ["--help"]):
        print(USAGE)
        sys.exit(0)
    if sys.argv[1:] != ["--sample"]:
        sys.exit(USAGE)
    print(write_sample_subject())
