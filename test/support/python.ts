/** The Python interpreter the tests run apps and pytest with: Debian's, unless POLLEN_TEST_PYTHON names another. */
export const PYTHON = process.env.POLLEN_TEST_PYTHON ?? '/usr/bin/python3';
