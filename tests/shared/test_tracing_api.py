"""shared.tracing.api: the calls the Flask-free domain cores make (flow_span, annotate, correlate).

The cores must be able to trace without Flask: importing ``shared.tracing`` and recording a flow
span must not import it (checked in a fresh interpreter, where no other test has loaded Flask).
"""

from __future__ import annotations

import subprocess
import sys

from shared.tracing.api import PROCESS_SCRUBBER, register_secrets


def test_importing_the_tracing_api_does_not_import_flask() -> None:
    code = (
        "import sys\n"
        "from shared.flow import step\n"
        "from shared.tracing import flow_span, annotate, correlate, TraceStore, build_transaction\n"
        "with flow_span(step(6), 'C_GenerateKeyPair', summary={'algorithm': 'EC P-256'}) as span:\n"
        "    span.response({'key_handle': 'k1'})\n"
        "assert 'flask' not in sys.modules, sorted(m for m in sys.modules if m.startswith('flask'))\n"
        "print('flask-free')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "flask-free"


def test_the_flask_adapters_still_load_on_first_use() -> None:
    import shared.tracing as tracing

    assert callable(tracing.instrument_app)
    assert callable(tracing.trainer_blueprint)


def test_registered_secrets_are_masked_in_flow_spans() -> None:
    secret = "s3cr3t-value-for-the-process-scrubber"
    register_secrets([secret])
    assert secret not in PROCESS_SCRUBBER(f"token={secret}")
