from services.designer.models import Base
from shared.migrations import run_env

run_env("designer", Base.metadata)
