/** The Python interpreter tests run apps with: Debian's, which has numpy, grpcio and protobuf. */
export const TEST_PYTHON = process.env.POLLEN_TEST_PYTHON ?? '/usr/bin/python3';
