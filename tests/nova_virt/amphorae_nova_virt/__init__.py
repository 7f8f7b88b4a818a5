"""Test-only Nova virt driver, installed as ``nova.virt.amphorae_netns`` (Nova loads
drivers only from its ``nova.virt`` namespace): ``compute_driver =
amphorae_netns.driver.NetnsDriver``. Its modules import Nova only in driver.py."""
