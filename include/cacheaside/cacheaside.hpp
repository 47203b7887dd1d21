#pragma once
/// \file cacheaside.hpp
/// Umbrella header: CacheAside<T>, its options, serializers, statistics and the client
/// boundary. The hiredis adapter is separate: include <cacheaside/client/hiredis.hpp> (or
/// <cacheaside/hiredis_client.hpp>) and link cacheaside::hiredis.

#include <cacheaside/cache_aside.hpp>
#include <cacheaside/client/redis_client.hpp>
#include <cacheaside/codec/envelope.hpp>
#include <cacheaside/codec/serializer.hpp>
#include <cacheaside/errors.hpp>
#include <cacheaside/options.hpp>
#include <cacheaside/stats.hpp>
#include <cacheaside/version.hpp>
