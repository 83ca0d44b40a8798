"""avatarme-edu: an educational implementation of AvatarMe (Lattas et al., CVPR 2020).

The library is grouped by pipeline stage; the notebooks import from it and do not define algorithms.
Every function that depends on sizes or the device takes a :class:`~avatarme_edu.profiles.Profile`.
"""

from avatarme_edu.profiles import Profile, get_profile

__all__ = ["Profile", "get_profile"]
__version__ = "0.1.0"
