"""distill_lib: truncation, continued pretraining and distillation for the Jha et al. study.

Importing the package first points every cache into the project folder and turns the model/dataset
hubs off (see `distill_lib.env`); set DISTILL_ONLINE=1 to download from the hub.
"""
from distill_lib.env import code_version as _code_version
from distill_lib.env import configure_environment as _configure_environment
from distill_lib.env import keep_freed_memory as _keep_freed_memory

_configure_environment()
_keep_freed_memory()
_code_version()  # the commit this process runs, read now: records made hours later name the code that made them

__version__ = "0.1.0"
