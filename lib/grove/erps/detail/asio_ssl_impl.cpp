// The one translation unit that compiles Boost.Asio's SSL sources (erps TLS);
// BOOST_ASIO_SEPARATE_COMPILATION is set for every grove TU and user.
#include <boost/asio/ssl/impl/src.hpp>
