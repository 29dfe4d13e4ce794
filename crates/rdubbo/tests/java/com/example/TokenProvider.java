package com.example;

import org.apache.dubbo.config.ApplicationConfig;
import org.apache.dubbo.config.ProtocolConfig;
import org.apache.dubbo.config.RegistryConfig;
import org.apache.dubbo.config.ServiceConfig;
import org.apache.dubbo.config.bootstrap.DubboBootstrap;

/**
 * Exports UserService with Dubbo's token auth (ServiceConfig.setToken) over dubbo:// on
 * 127.0.0.1:&lt;port&gt;, prints "READY &lt;port&gt;", and exits when standard input closes.
 *
 * <pre>
 * TokenProvider --port P --token T|true [--registry zookeeper://127.0.0.1:Z]
 * </pre>
 */
public final class TokenProvider {
    private TokenProvider() {
    }

    public static void main(String[] args) throws Exception {
        int port = -1;
        String token = null;
        String registry = null;
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--port":
                    port = Integer.parseInt(args[++i]);
                    break;
                case "--token":
                    token = args[++i];
                    break;
                case "--registry":
                    registry = args[++i];
                    break;
                default:
                    System.err.println("unknown argument: " + args[i]);
                    System.exit(2);
            }
        }
        if (port <= 0 || token == null) {
            System.err.println("usage: TokenProvider --port P --token T [--registry zookeeper://H:P]");
            System.exit(2);
        }
        ApplicationConfig app = new ApplicationConfig("java-token-provider");
        app.setQosEnable(false);
        RegistryConfig reg = new RegistryConfig(registry == null ? "N/A" : registry);
        reg.setUseAsConfigCenter(false);
        reg.setUseAsMetadataCenter(false);
        ProtocolConfig protocol = new ProtocolConfig("dubbo", port);
        protocol.setHost("127.0.0.1");
        ServiceConfig<UserService> service = new ServiceConfig<>();
        service.setInterface(UserService.class);
        service.setRef(new JavaProvider.UserServiceImpl());
        service.setToken(token);
        try {
            DubboBootstrap.getInstance().application(app).registry(reg).protocol(protocol).service(service)
                    .start();
        } catch (Throwable t) {
            System.out.println("FAILED " + t);
            t.printStackTrace(System.out);
            System.out.flush();
            Runtime.getRuntime().halt(1);
        }
        System.out.println("READY " + port);
        System.out.flush();
        while (System.in.read() >= 0) {
            // keep reading: the harness closes our stdin when it is done
        }
        Runtime.getRuntime().halt(0);
    }
}
