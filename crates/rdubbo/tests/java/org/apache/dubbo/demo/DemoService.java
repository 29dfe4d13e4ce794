package org.apache.dubbo.demo;

/** The demo service of Apache Dubbo's samples, as `rdubbo demo provider` serves it. */
public interface DemoService {
    String sayHello(String name);

    Object echo(Object value);
}
