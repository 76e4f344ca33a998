// stagegatectl: thin executable over stagegate::ctl::run.
#include "stagegate/ctl/ctl.hpp"

#include <iostream>

int main(int argc, char** argv) {
    std::vector<std::string> args(argv + 1, argv + argc);
    return stagegate::ctl::run(args, std::cout, std::cerr);
}
