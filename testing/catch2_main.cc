// The main() every Catch2 test binary links against.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
