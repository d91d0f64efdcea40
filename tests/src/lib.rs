//! Black-box tests of AfriTalk live in `tests/`: they start the real application
//! on a free port and drive it over HTTP and with the official `socket.io-client`.
