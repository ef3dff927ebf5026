// The one translation unit that compiles Boost.Asio's sources
// (BOOST_ASIO_SEPARATE_COMPILATION is set for every grove TU and user).
#include <boost/asio/impl/src.hpp>
