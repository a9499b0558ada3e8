# Source this in a shell to run cargo by hand (the Makefile sets the same itself): the
# project-local Python whose torch provides libtorch for tch (LIBTORCH_USE_PYTORCH=1).
HINT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export VIRTUAL_ENV="$HINT_ROOT/.venv"
export PATH="$VIRTUAL_ENV/bin:$PATH"
export LIBTORCH_USE_PYTORCH=1
