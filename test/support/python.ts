/** The Python interpreter tests run apps and the Python SDK with (Debian's, which has numpy, grpcio, torch). */
export const PYTHON = process.env.POLLEN_TEST_PYTHON ?? '/usr/bin/python3';
