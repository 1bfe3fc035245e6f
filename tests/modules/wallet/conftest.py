"""The wallet tests use the marketplace's product fixture and the payment tests' server."""

from tests.modules.marketplace.conftest import make_product  # noqa: F401 - fixture
from tests.modules.payment.conftest import serve  # noqa: F401 - fixture
