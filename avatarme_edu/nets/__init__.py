"""The reflectance networks (issue 9): RCAN super-resolution and pix2pixHD image translation.

* :mod:`~avatarme_edu.nets.rcan`       - RCAN (Zhang et al. 2018), the texture super-resolution;
* :mod:`~avatarme_edu.nets.pix2pixhd`  - the global generator and multi-scale PatchGANs (Wang et al. 2018);
* :mod:`~avatarme_edu.nets.losses`     - LSGAN, feature matching, masked L1;
* :mod:`~avatarme_edu.nets.tasks`      - which maps go in and come out of each of AvatarMe's networks;
* :mod:`~avatarme_edu.nets.weights`    - safetensors weights with their configuration;
* :mod:`~avatarme_edu.nets.checkpoint` - training checkpoints (weights, optimiser, step, random state);
* :mod:`~avatarme_edu.nets.train`      - the training loop with exact resume;
* :mod:`~avatarme_edu.nets.train_command` - ``avatarme-edu train``: a network trained on a light-stage dataset;
* :mod:`~avatarme_edu.nets.validate`   - held-out numbers and figures during training;
* :mod:`~avatarme_edu.nets.manifest`   - the committed weights' manifest: command, data, steps, held-out curve.

The stage functions that run trained networks over whole maps are in :mod:`avatarme_edu.stages`, their
scores against the baselines on held-out subjects in :mod:`avatarme_edu.evaluation`.
"""

from avatarme_edu.nets.losses import feature_matching_loss, lsgan_loss, masked_l1
from avatarme_edu.nets.pix2pixhd import (
    GlobalGenerator,
    MultiscaleDiscriminator,
    discriminator_from_profile,
    generator_from_profile,
)
from avatarme_edu.nets.rcan import RCAN, rcan_from_profile
from avatarme_edu.nets.tasks import TASKS, Task, build_network, get_task, network_input, network_target
from avatarme_edu.nets.train import Trainer, train
from avatarme_edu.nets.train_command import add_train_parser, run_train
from avatarme_edu.nets.weights import default_weights_path, load_weights, read_weights_info, save_weights

__all__ = [
    "RCAN", "rcan_from_profile",
    "GlobalGenerator", "MultiscaleDiscriminator", "generator_from_profile", "discriminator_from_profile",
    "masked_l1", "lsgan_loss", "feature_matching_loss",
    "TASKS", "Task", "get_task", "build_network", "network_input", "network_target",
    "save_weights", "load_weights", "read_weights_info", "default_weights_path",
    "Trainer", "train", "add_train_parser", "run_train",
]
