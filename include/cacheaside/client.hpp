#pragma once
/// \file client.hpp
/// Forwarding header: the client boundary lives in <cacheaside/client/redis_client.hpp>.

#include <cacheaside/client/redis_client.hpp>
